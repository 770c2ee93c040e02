"""``daly-bms serve``: read one BMS over BLE and serve it over HTTP/JSON, without ROS.

The same server as the ROS bridge node (``daly_bms_bridge``), fed from the BLE link directly:
for a Raspberry Pi that runs no ROS. Binds to 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from daly_bms_ros.bridge.files import DataDirectoryWriter
from daly_bms_ros.bridge.http_server import DEFAULT_HOST, BridgeHttpServer, exposure_warning
from daly_bms_ros.bridge.mqtt import MqttPublisher, MqttSettings
from daly_bms_ros.bridge.store import LinkCounters, SampleStore
from daly_bms_ros.cli.device import (
    add_device_arguments,
    add_poll_arguments,
    bind_address,
    follow,
    positive_seconds,
    tcp_port,
)
from daly_bms_ros.cli.exit_codes import ExitCode
from daly_bms_ros.cli.legacy import PiReaderLayout
from daly_bms_ros.link.supervisor import LinkStatus
from daly_bms_ros.link.transport import BmsTransport
from daly_bms_ros.protocol import BmsSample

BATTERY_NAME = "bms"
#: What the data directory's files may be called and hold (``--data-layout``).
DATA_LAYOUTS = ("bridge", "pi-reader")


def add_bridge_arguments(parser: argparse.ArgumentParser) -> None:
    """Where to serve and when data counts as stale."""
    parser.add_argument(
        "--host",
        type=bind_address,
        default=DEFAULT_HOST,
        help="address to bind (default 127.0.0.1; another one exposes it, without authentication)",
    )
    parser.add_argument("--port", type=tcp_port, default=8080, help="TCP port (default 8080)")
    parser.add_argument(
        "--max-age",
        type=positive_seconds,
        default=5.0,
        help="seconds after which a sample is stale and answers become 503 (default 5)",
    )
    parser.add_argument("--data-dir", type=Path, help="also write latest.json and status.json here")
    parser.add_argument(
        "--data-layout",
        choices=DATA_LAYOUTS,
        default="bridge",
        help="the data directory's files: bridge (latest.json, status.json; the default), or "
        "pi-reader (bms_latest.json, bms_status.json as the earlier Pi reader wrote them)",
    )
    mqtt_options = parser.add_argument_group(
        "MQTT",
        "publish to a broker, with Home Assistant discovery (password: $DALY_BMS_MQTT_PASSWORD)",
    )
    mqtt_options.add_argument("--mqtt", metavar="HOST[:PORT]", help="broker (default port 1883)")
    mqtt_options.add_argument("--mqtt-username")
    mqtt_options.add_argument("--mqtt-tls", action="store_true", help="TLS to the broker")
    mqtt_options.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate (with --mqtt-tls)")
    mqtt_options.add_argument("--mqtt-topic-prefix", default="daly_bms")
    mqtt_options.add_argument("--mqtt-discovery-prefix", default="homeassistant")
    mqtt_options.add_argument(
        "--mqtt-interval",
        type=positive_seconds,
        default=5.0,
        help="seconds between state messages (default 5)",
    )


def mqtt_settings(arguments: argparse.Namespace) -> MqttSettings | None:
    """Return the MQTT settings the options ask for; None without ``--mqtt``; ValueError."""
    if arguments.mqtt is None:
        return None
    host, colon, port = arguments.mqtt.rpartition(":")
    if not colon:
        host, port = arguments.mqtt, "1883"
    if not port.isdigit():
        raise ValueError(f"--mqtt {arguments.mqtt!r}: HOST or HOST:PORT")
    return MqttSettings(
        host=host,
        port=int(port),
        username=arguments.mqtt_username,
        password=os.environ.get("DALY_BMS_MQTT_PASSWORD"),
        tls=arguments.mqtt_tls,
        ca_file=arguments.mqtt_ca,
        topic_prefix=arguments.mqtt_topic_prefix,
        discovery_prefix=arguments.mqtt_discovery_prefix,
        interval=arguments.mqtt_interval,
    )


def add_parser(subparsers: Any) -> None:
    """Register the ``serve`` subcommand."""
    parser = subparsers.add_parser("serve", help="serve the BMS over HTTP/JSON until Ctrl+C")
    add_device_arguments(parser)
    add_poll_arguments(parser)
    add_bridge_arguments(parser)
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; exit 1 when the port cannot be bound, 2 for a bad data dir."""
    store = SampleStore([BATTERY_NAME], arguments.max_age)
    pi_reader = PiReaderLayout() if arguments.data_layout == "pi-reader" else None
    if pi_reader is not None and not arguments.data_dir:
        print("daly-bms: --data-layout pi-reader needs --data-dir, e.g. bms_data", file=sys.stderr)
        return ExitCode.USAGE
    writer = (
        DataDirectoryWriter(store, arguments.data_dir, layout=pi_reader)
        if arguments.data_dir
        else None
    )
    try:
        if writer is not None:
            writer.check()
        mqtt = mqtt_settings(arguments)
    except ValueError as error:
        print(f"daly-bms: {error}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        server = BridgeHttpServer(store, arguments.host, arguments.port)
    except OSError as error:
        print(
            f"daly-bms: cannot listen on {arguments.host}:{arguments.port}: {error}",
            file=sys.stderr,
        )
        return ExitCode.FAILED

    def keep(transport: BmsTransport, sample: BmsSample, status: LinkStatus) -> None:
        if pi_reader is not None:
            pi_reader.track(
                transport.name, transport.address, status.notifications, status.reconnects
            )
        # Its identity (Home Assistant's device): a wired BMS's port and board.
        store.update(BATTERY_NAME, sample, status.address or BATTERY_NAME)

    def track(status: LinkStatus) -> None:
        store.set_link(BATTERY_NAME, status.summary)
        store.set_counters(BATTERY_NAME, LinkCounters(status.reconnects, dict(status.rejected)))

    publisher = MqttPublisher(store, mqtt) if mqtt is not None else None
    server.start()
    if writer is not None:
        writer.start()
    if publisher is not None:
        publisher.start()
    print(f"daly-bms: serving on {server.url}", file=sys.stderr, flush=True)
    if (warning := exposure_warning(arguments.host)) is not None:
        print(f"daly-bms: warning: {warning}", file=sys.stderr, flush=True)
    try:
        asyncio.run(follow(arguments, keep, on_status=track))
    finally:
        server.stop()
        if writer is not None:
            writer.stop()
        if publisher is not None:
            publisher.stop()
    return ExitCode.OK
