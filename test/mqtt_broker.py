"""A real MQTT broker (Debian's mosquitto) on loopback, and a subscriber that keeps what it saw."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Broker:
    """mosquitto with a configuration of the test's, started and stopped at will (same port)."""

    def __init__(self, work_dir: Path, extra_config: str = "") -> None:
        self.port = free_port()
        self.config = work_dir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + (extra_config or "allow_anonymous true\n")
            + "persistence false\n"
            # Run as root, mosquitto would become user "mosquitto" and not read the test's files.
            + f"user {getpass.getuser()}\n"
        )
        self._log = work_dir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self._process.poll() is None, self._log.read_text()
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen: {self._log.read_text()}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


@contextmanager
def broker(work_dir: Path, extra_config: str = "") -> Iterator[Broker]:
    """A running mosquitto on a free loopback port, stopped at the end whatever happens."""
    running = Broker(work_dir, extra_config)
    running.start()
    try:
        yield running
    finally:
        running.stop()


class Subscriber:
    """Subscribes ``#`` and keeps every message (topic, payload, retained), from paho's thread."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda client, *_: client.subscribe("#", qos=1)
        self._client.reconnect_delay_set(0.2, 1)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def last(self, topic: str) -> bytes | None:
        with self._lock:
            payloads = [payload for seen, payload, _ in self.messages if seen == topic]
        return payloads[-1] if payloads else None

    def wait_for(
        self, topic: str, accept: Callable[[bytes], bool] = lambda _: True, timeout: float = 20
    ) -> bytes:
        """The first message on ``topic`` (from now on or kept) that ``accept`` takes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for seen, payload, _ in self.messages:
                    if seen == topic and accept(payload):
                        return payload
            time.sleep(0.05)
        raise AssertionError(f"nothing accepted on {topic}; topics seen: {self.topics()}")

    def json(self, topic: str, timeout: float = 20) -> Any:
        return json.loads(self.wait_for(topic, timeout=timeout))

    def topics(self) -> set[str]:
        with self._lock:
            return {topic for topic, _, _ in self.messages}

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
