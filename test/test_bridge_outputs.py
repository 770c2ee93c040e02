"""The bridge's outputs beside JSON: /metrics, the history view, MQTT to a real broker.

/metrics is read back with prometheus_client's own parser; MQTT goes through Debian's mosquitto
on loopback, with a subscriber that checks Home Assistant's discovery and the state messages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bluez_mock import NAME_PREFIX, bluez_mock, sim_process
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from installed import program
from mqtt_broker import Subscriber, broker
from prometheus_client.parser import text_string_to_metric_families
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_spin import spin_in_background
from sensor_msgs.msg import BatteryState
from test_bridge import FakeClock, get, real_sample, serving
from test_e2e_faults import wait_until
from test_sim_a5 import serial_sim

from daly_bms_ros.bridge.mqtt import MqttPublisher, MqttSettings, device_slug
from daly_bms_ros.bridge.node import DalyBmsBridge
from daly_bms_ros.bridge.store import SILENT, LinkCounters, Reading, SampleStore
from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.groups import combine, parse_group
from daly_bms_ros.node.messages import BatteryIdentity, battery_state, daly_cells

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="mosquitto is installed by scripts/setup.sh",
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(clock: FakeClock) -> Iterator[tuple[SampleStore, str]]:
    store = SampleStore(["front", "rear"], max_age=5.0, clock=clock)
    with serving(store) as url:
        yield store, url


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by name and labels, parsed by prometheus_client's parser."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_say_what_the_json_says(served: tuple[SampleStore, str], clock: FakeClock) -> None:
    store, url = served
    store.update("front", real_sample(time.time()))
    store.set_link("front", "connected")
    store.set_counters("front", LinkCounters(3, {"bad_crc": 2, "truncated": 1}))
    status, _, record = get(url + "/bms/front")
    assert status == 200
    metrics = scrape(url)

    def value(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted({"battery": "front", **labels}.items())))]

    assert value("daly_bms_up") == 1.0
    assert value("daly_bms_voltage_volts") == record["pack_voltage"]
    assert value("daly_bms_current_amperes") == record["current"]
    assert value("daly_bms_state_of_charge_ratio") == pytest.approx(record["soc"] / 100)
    assert value("daly_bms_charge_cycles") == record["cycles"]
    for number, voltage in enumerate(record["cell_voltages"], start=1):
        assert value("daly_bms_cell_voltage_volts", cell=str(number)) == voltage
    for number, temperature in enumerate(record["temperatures"], start=1):
        assert value("daly_bms_temperature_celsius", sensor=str(number)) == temperature
    assert value("daly_bms_temperature_celsius", sensor="mos") == record["mos_temperature"]
    assert value("daly_bms_charge_mos_on") == float(record["charge_mos"])
    assert value("daly_bms_discharge_mos_on") == float(record["discharge_mos"])
    assert record["alarms"] == ["soc_low_2"]
    assert value("daly_bms_alarm", alarm="soc_low_2") == 1.0
    assert value("daly_bms_alarms_active") == 1.0
    assert value("daly_bms_link_state", state="connected") == 1.0
    # Counters get the _total suffix of the exposition format.
    assert value("daly_bms_reconnects_total") == 3.0
    assert value("daly_bms_rejected_frames_total", reason="bad_crc") == 2.0
    # The battery that never answered: down, with no values at all.
    rear = {key: v for key, v in metrics.items() if ("battery", "rear") in key[1]}
    assert rear[("daly_bms_up", (("battery", "rear"),))] == 0.0
    assert {name for name, _ in rear} == {
        "daly_bms_up",
        "daly_bms_sample_age_seconds",
        "daly_bms_link_state",
    }
    # Stale: the values go, so that Prometheus does not chart old numbers as new.
    clock.now += 6
    metrics = scrape(url)
    assert value("daly_bms_up") == 0.0
    assert ("daly_bms_voltage_volts", (("battery", "front"),)) not in metrics
    assert value("daly_bms_sample_age_seconds") == pytest.approx(6.0, abs=0.1)


def test_history_is_kept_bounded_and_served(clock: FakeClock) -> None:
    store = SampleStore(["bms"], max_age=5.0, clock=clock, history_window=10, history_step=1)
    start = 1795600000.0
    for tick in range(80):  # 4 samples per second for 20 s
        store.update("bms", real_sample(start + tick / 4))
    history = store.history("bms")
    # One point per step (each half a step early at most), the window's worth: the last 10.
    assert history.times == tuple(start + second + 0.5 for second in range(10, 20))
    assert set(history.pack_voltage) == {51.1}
    with serving(store) as url:
        status, _, body = get(url + "/bms/history")
    assert status == 200
    assert body["time"] == list(history.times)
    assert body["soc"] == [8.7] * 10
    assert body["window_s"] == 10
    # A clock set back (or a replay starting over) starts the history anew.
    store.update("bms", real_sample(start))
    assert store.history("bms").times == (start,)


def test_history_keeps_every_sample_of_polls_at_the_step_with_jitter(clock: FakeClock) -> None:
    """Answers arrive a step apart give or take some jitter: none is dropped."""
    store = SampleStore(["bms"], max_age=5.0, clock=clock, history_step=1)
    start = 1795600000.0
    arrivals = [start + second + (0.04 if second % 2 else -0.03) for second in range(40)]
    for at in arrivals:
        store.update("bms", real_sample(at))
    assert store.history("bms").times == tuple(arrivals)


def test_the_page_and_its_files_are_served(served: tuple[SampleStore, str]) -> None:
    _, url = served
    status, content_type, page = get(url + "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    for path in ("/page/page.js", "/page/page.css", "/page/vendor/uplot/uPlot.iife.min.js"):
        assert f'"{path}"' in page
        assert get(url + path)[0] == 200
    licence = get(url + "/page/vendor/uplot/LICENSE")[2]
    assert "MIT" in licence
    # Only the files of the package: nothing else, however the path is spelt.
    for path in ("/page/../store.py", "/page/%2e%2e/store.py", "/page/vendor", "/page/missing.js"):
        assert get(url + path)[0] == 404


def state_of(subscriber: Subscriber, topic: str, accept: Any = lambda _: True) -> Any:
    return json.loads(subscriber.wait_for(topic, lambda payload: accept(json.loads(payload))))


def test_mqtt_discovery_state_and_a_broker_restart(tmp_path: Path, clock: FakeClock) -> None:
    store = SampleStore(["bms"], max_age=5.0, clock=clock)
    with broker(tmp_path) as running:
        subscriber = Subscriber(running.port)
        publisher = MqttPublisher(
            store, MqttSettings("127.0.0.1", running.port, interval=0.2, client_id="bridge")
        )
        publisher.start()
        try:
            assert subscriber.wait_for("daly_bms/status") == b"online"
            assert subscriber.wait_for("daly_bms/bms/availability") == b"offline"
            store.update("bms", real_sample(time.time()))
            store.set_link("bms", "connected")
            discovery = "homeassistant/sensor/daly_bms_40_d6_3c_3f_3e_5a"
            voltage = subscriber.json(f"{discovery}/pack_voltage/config")
            assert voltage["device_class"] == "voltage"
            assert voltage["unit_of_measurement"] == "V"
            assert voltage["state_class"] == "measurement"
            assert voltage["state_topic"] == "daly_bms/bms/state"
            assert voltage["unique_id"] == "daly_bms_40_d6_3c_3f_3e_5a_pack_voltage"
            assert voltage["device"]["identifiers"] == ["daly_bms_40_d6_3c_3f_3e_5a"]
            assert subscriber.json(f"{discovery}/soc/config")["device_class"] == "battery"
            subscriber.wait_for(f"{discovery}/link/config")  # the last one sent
            cells = [topic for topic in subscriber.topics() if re.search(r"/cell_\d+/", topic)]
            assert len(cells) == 16
            alarm = subscriber.json(
                "homeassistant/binary_sensor/daly_bms_40_d6_3c_3f_3e_5a/alarm/config"
            )
            assert alarm["device_class"] == "problem"
            state = subscriber.json("daly_bms/bms/state")
            assert state["pack_voltage"] == 51.1
            assert state["cell_voltages"][0] == 3.188
            assert state["alarms"] == ["soc_low_2"]
            assert subscriber.wait_for("daly_bms/bms/availability", lambda p: p == b"online")
            assert subscriber.last("daly_bms/bms/link") == b"connected"
            assert store.problems() == {}

            # The broker goes away: the bridge says so in /health's problems, and comes back.
            running.stop()
            deadline = time.monotonic() + 20
            while "mqtt" not in store.problems() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert f"MQTT broker 127.0.0.1:{running.port}" in store.problems()["mqtt"]
            running.start()  # no persistence: it forgot every retained message
            subscriber.clear()
            store.update("bms", real_sample(time.time()))
            assert subscriber.wait_for("daly_bms/status", timeout=40) == b"online"
            assert subscriber.json(f"{discovery}/pack_voltage/config")["device_class"] == "voltage"
            assert subscriber.json("daly_bms/bms/state")["pack_voltage"] == 51.1
            assert store.problems() == {}

            # Stale data: the battery goes offline, its state is no longer sent.
            clock.now += 6
            subscriber.wait_for("daly_bms/bms/availability", lambda p: p == b"offline")
            subscriber.clear()
            time.sleep(0.6)
            assert subscriber.last("daly_bms/bms/state") is None
        finally:
            publisher.stop()
        assert subscriber.wait_for("daly_bms/status", lambda p: p == b"offline")
        subscriber.close()


def test_mqtt_with_a_password_and_tls(tmp_path: Path, clock: FakeClock) -> None:
    make_certificates(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "robot", "s3cret"],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    tls = (
        "allow_anonymous false\n"
        f"password_file {passwords}\n"
        f"certfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
    )
    store = SampleStore(["bms"], max_age=5.0, clock=clock)
    store.update("bms", real_sample(time.time()))
    with broker(tmp_path, tls) as running:
        good = MqttSettings(
            "localhost",
            running.port,
            username="robot",
            password="s3cret",
            tls=True,
            ca_file=str(tmp_path / "ca.pem"),
            interval=0.2,
        )
        for settings, problem in (
            (dataclasses.replace(good, password="wrong"), "refused"),
            (dataclasses.replace(good, ca_file=None), "cannot be reached"),  # untrusted certificate
        ):
            refused = MqttPublisher(store, settings)
            refused.start()
            try:
                deadline = time.monotonic() + 20
                while (
                    problem not in store.problems().get("mqtt", "") and time.monotonic() < deadline
                ):
                    time.sleep(0.05)
                assert problem in store.problems()["mqtt"], store.problems()
            finally:
                refused.stop()
        publisher = MqttPublisher(store, good)
        publisher.start()
        try:
            deadline = time.monotonic() + 20
            while store.problems() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.problems() == {}
        finally:
            publisher.stop()


def make_certificates(directory: Path) -> None:
    """A CA and a server certificate for localhost, signed by it (openssl, a second or two)."""

    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
            "-out", "server.pem")  # fmt: skip


CLI = program("daly-bms")


def test_serve_publishes_the_virtual_bms_and_its_last_will(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CLI
    name = f"{NAME_PREFIX}MQTT1"
    with broker(tmp_path) as running, bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        subscriber = Subscriber(running.port)
        with sim_process(name, tmp_path):
            serve = subprocess.Popen(
                [CLI, "serve", "--name", name, "--adapter", "hci0", "--port", "0",
                 "--interval", "0.2", "--mqtt", f"127.0.0.1:{running.port}",
                 "--mqtt-interval", "0.5", "--mqtt-topic-prefix", "robot/battery"],
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "DALY_BMS_MQTT_PASSWORD": "unused"},
            )  # fmt: skip
            try:
                state = subscriber.json("robot/battery/bms/state", timeout=40)
                assert len(state["cell_voltages"]) == 16
                assert state["device"].startswith(name)
                assert state["link"] == "connected"
                assert subscriber.wait_for("robot/battery/status") == b"online"
                link = subscriber.json(
                    "homeassistant/sensor/daly_bms_00_aa_01_00_00_02/link/config"  # the last one
                )
                assert link["state_topic"] == "robot/battery/bms/link"
                configs = [t for t in subscriber.topics() if t.startswith("homeassistant/")]
                # 10 pack sensors, 16 cells, 2 temperatures, 4 binary sensors, the link
                assert len(configs) == 33
            finally:
                # Killed: no goodbye, the broker sends the last will.
                serve.send_signal(signal.SIGKILL)
                serve.wait(10)
        assert subscriber.wait_for("robot/battery/status", lambda p: p == b"offline") == b"offline"
        subscriber.close()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--mqtt", "broker:port"], "HOST or HOST:PORT"),
        (["--mqtt", "broker", "--mqtt-topic-prefix", "a/#"], "without '+', '#'"),
        (["--mqtt", "broker", "--mqtt-ca", "ca.pem"], "only with TLS"),
    ],
)
def test_serve_refuses_bad_mqtt_options(option: list[str], message: str) -> None:
    assert CLI
    result = subprocess.run(
        [CLI, "serve", *option], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert message in result.stderr


def mqtt_bridge(context: Context, mqtt_port: int, batteries: list[str]) -> DalyBmsBridge:
    """A bridge of ``batteries`` on an ephemeral HTTP port, publishing to the broker at 5 Hz."""
    return DalyBmsBridge(
        context=context,
        parameter_overrides=[
            Parameter("batteries", value=batteries),
            Parameter("port", value=0),
            Parameter("mqtt_host", value="127.0.0.1"),
            Parameter("mqtt_port", value=mqtt_port),
            Parameter("mqtt_interval", value=0.2),
        ],
    )


def test_ros_bridge_publishes_to_mqtt_with_counters_from_diagnostics(
    ros_context: Context, tmp_path: Path
) -> None:
    with broker(tmp_path) as running:
        subscriber = Subscriber(running.port)
        bridge = mqtt_bridge(ros_context, running.port, ["/front"])
        node = Node("battery_publisher", context=ros_context)
        battery = node.create_publisher(BatteryState, "/front/battery_state", 10)
        cells = node.create_publisher(DalyCells, "/front/cells", 10)
        diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        identity = BatteryIdentity(
            "battery", "", "40:D6:3C:3F:3E:5A", BatteryState.POWER_SUPPLY_TECHNOLOGY_LIFE, 0.0
        )
        stop = spin_in_background(ros_context, bridge, node)
        try:
            url = bridge.server.url

            def publish() -> bool:
                sample = real_sample(time.time())
                stamp = Time(sec=int(sample.received_at), nanosec=0)
                battery.publish(battery_state(sample, identity, stamp))
                cells.publish(daly_cells(sample, "battery", stamp))
                diagnostics.publish(
                    DiagnosticArray(
                        status=[
                            DiagnosticStatus(
                                name="other: thing",
                                hardware_id="someone else",
                                values=[KeyValue(key="reconnects", value="99")],
                            ),
                            DiagnosticStatus(
                                name="daly_bms: battery",
                                hardware_id="40:D6:3C:3F:3E:5A",
                                values=[
                                    KeyValue(key="reconnects", value="4"),
                                    KeyValue(key="rejected_bad_crc", value="7"),
                                ],
                            ),
                        ]
                    )
                )
                metrics = scrape(url)
                return metrics.get(("daly_bms_reconnects_total", (("battery", "front"),))) == 4

            deadline = time.monotonic() + 20
            while not publish() and time.monotonic() < deadline:
                time.sleep(0.1)
            metrics = scrape(url)
            assert metrics[("daly_bms_up", (("battery", "front"),))] == 1.0
            key = ("daly_bms_rejected_frames_total", (("battery", "front"), ("reason", "bad_crc")))
            assert metrics[key] == 7.0
            state = subscriber.json("daly_bms/front/state")
            assert state["pack_voltage"] == 51.1
            assert state["link"] == "publishing"
            voltage = subscriber.json(
                "homeassistant/sensor/daly_bms_40_d6_3c_3f_3e_5a/pack_voltage/config"
            )
            assert voltage["state_topic"] == "daly_bms/front/state"
        finally:
            stop()
            bridge.close()
            bridge.destroy_node()
            node.destroy_node()
        assert subscriber.wait_for("daly_bms/status", lambda p: p == b"offline")
        subscriber.close()


def test_the_bridge_parameters_file_holds_every_default(ros_context: Context) -> None:
    config = Path(__file__).resolve().parents[1] / "config" / "daly_bms_bridge.yaml"
    written = yaml.safe_load(config.read_text())["daly_bms_bridge"]["ros__parameters"]
    bridge = DalyBmsBridge(context=ros_context, parameter_overrides=[Parameter("port", value=0)])
    try:
        declared = {
            name: parameter.value
            for name, parameter in bridge._parameters.items()
            if name not in ("use_sim_time", "start_type_description_service")
        }
    finally:
        bridge.close()
        bridge.destroy_node()
    assert written == {**declared, "port": 8080}


def wired_reading(identity: str | None, port: str = "/dev/pts/0") -> Reading:
    sample = dataclasses.replace(real_sample(), device=f"{port} (9600 baud)")
    return Reading(sample, 1.0, "connected", identity=identity)


def test_each_battery_is_a_device_of_its_own_on_the_broker() -> None:
    """A wired BMS's link text ("/dev/pts/0 (9600 baud)") made every one "9600_baud"."""
    ble = Reading(real_sample(), 1.0, "connected", identity="SERIAL1")
    # A Bluetooth BMS stays its address, as Home Assistant has known it.
    assert device_slug(ble, "bms", "daly_bms") == "40_d6_3c_3f_3e_5a"
    slugs = {
        device_slug(wired_reading(identity), "bms", prefix)
        for identity in ("/dev/pts/0", "/dev/pts/0 board 2", "/dev/pts_0", "DL12345678")
        for prefix in ("daly_bms", "robot/battery")
    }
    # Each identity under each topic prefix (a bridge of its own): eight devices.
    assert len(slugs) == 8
    for slug in slugs:
        assert slug is not None and re.fullmatch(r"[a-z0-9_]+", slug), slug
    readable = device_slug(wired_reading("/dev/serial/by-id/usb-FTDI_A50-if00"), "bms", "daly_bms")
    assert readable is not None and readable.startswith("dev_serial_by_id_usb_ftdi_a50_if00_")
    # Stable: the same battery is the same device at every start.
    assert device_slug(wired_reading("/dev/pts/0"), "bms", "daly_bms") == device_slug(
        wired_reading("/dev/pts/0", "/dev/pts/7"), "bms", "daly_bms"
    )
    # Not known yet: not announced, rather than announced under an id that passes.
    assert device_slug(wired_reading(None), "bms", "daly_bms") is None


def test_two_wired_serves_on_one_broker_keep_their_own_entities(tmp_path: Path) -> None:
    assert CLI
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        broker(tmp_path) as running,
        serial_sim(tmp_path / "a", "--protocol", "a5") as (_a, port_a),
        serial_sim(tmp_path / "b", "--protocol", "a5") as (_b, port_b),
    ):
        subscriber = Subscriber(running.port)
        serves = [
            subprocess.Popen(
                [CLI, "serve", "--serial-port", port, "--protocol", "a5", "--port", "0",
                 "--interval", "0.2", "--mqtt", f"127.0.0.1:{running.port}",
                 "--mqtt-interval", "0.3", "--mqtt-topic-prefix", prefix],
                stderr=subprocess.DEVNULL,
            )
            for port, prefix in ((port_a, "A"), (port_b, "B"))
        ]  # fmt: skip
        try:
            configs = {}
            for prefix in ("A", "B"):

                def announced(prefix: str = prefix) -> list[str]:
                    return [
                        topic
                        for topic in subscriber.topics()
                        if topic.endswith("/link/config")
                        and subscriber.json(topic)["state_topic"] == f"{prefix}/bms/link"
                    ]

                wait_until(announced, "the link entity of each serve")
                [topic] = announced()
                configs[prefix] = subscriber.json(topic)
        finally:
            for serve in serves:
                serve.send_signal(signal.SIGINT)
                serve.wait(20)
        subscriber.close()
    a, b = configs["A"], configs["B"]
    assert a["unique_id"] != b["unique_id"]
    assert a["device"]["identifiers"] != b["device"]["identifiers"]
    assert "9600_baud" not in a["unique_id"] + b["unique_id"]


def test_ros_bridge_tells_the_boards_of_one_bus_apart(ros_context: Context, tmp_path: Path) -> None:
    """Two boards on one RS485 port: one link text, two identities (their nodes' serial)."""
    identities = {"w1": "/dev/pts/0", "w2": "/dev/pts/0 board 2"}
    with broker(tmp_path) as running:
        subscriber = Subscriber(running.port)
        bridge = mqtt_bridge(ros_context, running.port, [f"/{name}" for name in identities])
        node = Node("battery_publisher", context=ros_context)
        publishers = {
            name: (
                node.create_publisher(BatteryState, f"/{name}/battery_state", 10),
                node.create_publisher(DalyCells, f"/{name}/cells", 10),
            )
            for name in identities
        }
        stop = spin_in_background(ros_context, bridge, node)

        def link_configs() -> dict[str, Any]:
            configs = {}
            for topic in subscriber.topics():
                payload = subscriber.last(topic)
                if topic.endswith("/link/config") and payload:
                    config = json.loads(payload)
                    configs[config["state_topic"].split("/")[1]] = config
            return configs

        def publish_until_announced() -> bool:
            for name, (battery, cells) in publishers.items():
                sample = dataclasses.replace(
                    real_sample(time.time()), device="/dev/pts/0 (9600 baud)"
                )
                stamp = Time(sec=int(sample.received_at), nanosec=0)
                identity = BatteryIdentity(
                    "battery", "", identities[name], BatteryState.POWER_SUPPLY_TECHNOLOGY_LIFE, 0.0
                )
                battery.publish(battery_state(sample, identity, stamp))
                cells.publish(daly_cells(sample, "battery", stamp))
            return len(link_configs()) == 2

        try:
            wait_until(publish_until_announced, "both boards announced")
        finally:
            stop()
            bridge.close()
            bridge.destroy_node()
            node.destroy_node()
            subscriber.close()
    configs = link_configs()
    assert configs["w1"]["unique_id"].startswith("daly_bms_dev_pts_0_")
    assert configs["w2"]["unique_id"].startswith("daly_bms_dev_pts_0_board_2_")
    assert configs["w1"]["device"]["identifiers"] != configs["w2"]["device"]["identifiers"]


def test_a_pack_group_is_a_battery_to_every_output(ros_context: Context, tmp_path: Path) -> None:
    """A group publishes a BatteryState alone (no DalyCells): JSON, text, /metrics, MQTT."""
    with broker(tmp_path) as running:
        subscriber = Subscriber(running.port)
        bridge = mqtt_bridge(ros_context, running.port, ["/left", "/bank"])
        node = Node("fleet_like", context=ros_context)
        group = node.create_publisher(BatteryState, "/bank/battery_state", 10)
        # A pack's BatteryState whose DalyCells publisher is not (yet) seen: not a group.
        pack = node.create_publisher(BatteryState, "/left/battery_state", 10)
        diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        stop = spin_in_background(ros_context, bridge, node)
        try:
            url = bridge.server.url

            def publish() -> bool:
                sample = real_sample(time.time())
                stamp = Time(sec=int(sample.received_at), nanosec=0)
                identity = BatteryIdentity(
                    "bank", "bank", "bank", BatteryState.POWER_SUPPLY_TECHNOLOGY_LIFE, 0.0
                )
                message = combine(parse_group("parallel(/a, /b)"), {
                    "/a": battery_state(sample, identity, stamp),
                    "/b": battery_state(sample, identity, stamp),
                })  # fmt: skip
                message.header.stamp, message.location = stamp, "bank"
                message.serial_number = "bank"
                group.publish(message)
                pack.publish(
                    battery_state(sample, dataclasses.replace(identity, serial_number="L"), stamp)
                )
                return get(url + "/bms/bank")[0] == 200

            wait_until(publish, "the group served")
            _, _, full = get(url + "/bms/bank")
            assert full["pack_voltage"] == 51.1
            assert full["current"] == 0.0
            assert full["remaining_capacity"] == 2 * 26.9  # each pack 26.9 Ah
            assert full["device"] == "bank (group)"
            assert full["link"] == "publishing"
            # What a BatteryState does not tell is unknown, never 0 cycles or a MOSFET off.
            for key in ("cycles", "charge_mos", "discharge_mos", "balancing"):
                assert full[key] is None, key
            _, _, summary = get(url + "/bms/bank/summary")
            assert summary["soc"] == 8.7 and summary["charge_mos"] is None
            assert summary["max_temperature"] == 23.0
            text = get(url + "/bms/bank/formatted")[2]
            assert re.search(r"cycles\s+n/a", text), text
            metrics = scrape(url)
            bank = (("battery", "bank"),)
            assert metrics[("daly_bms_up", bank)] == 1.0
            assert metrics[("daly_bms_voltage_volts", bank)] == pytest.approx(51.1)
            assert ("daly_bms_charge_cycles", bank) not in metrics
            assert ("daly_bms_charge_mos_on", bank) not in metrics
            state = subscriber.json("daly_bms/bank/state")
            assert state["pack_voltage"] == 51.1 and state["cycles"] is None
            assert subscriber.wait_for("daly_bms/bank/availability", lambda p: p == b"online")
            # The pack beside it, whose cells never came, is still waited for.
            assert get(url + "/bms/left")[0] == 503
            # The group stops (a member vanished): told as the fleet's diagnostics tell it.
            held = DiagnosticStatus(
                level=DiagnosticStatus.ERROR,
                name="/daly_bms_fleet: group bank",
                hardware_id="bank",
                message="not published: /b's latest state is 7.0 s old (group_max_age 5 s)",
            )

            def told() -> bool:
                diagnostics.publish(DiagnosticArray(status=[held]))
                return bool(get(url + "/bms/bank")[2]["link"] == held.message)

            wait_until(told, "the group's diagnostics once stale")
        finally:
            stop()
            bridge.close()
            bridge.destroy_node()
            node.destroy_node()
        subscriber.close()


def test_a_silent_battery_is_told_as_its_diagnostics_tell_its_link(ros_context: Context) -> None:
    """Messages stopped (or never came) while /diagnostics says the link is down and why."""
    bridge = DalyBmsBridge(
        context=ros_context,
        parameter_overrides=[
            Parameter("batteries", value=["/front", "/rear", "/bank"]),
            Parameter("port", value=0),
            Parameter("max_age", value=0.5),
        ],
    )
    node = Node("battery_publisher", context=ros_context)
    battery = node.create_publisher(BatteryState, "/front/battery_state", 10)
    cells = node.create_publisher(DalyCells, "/front/cells", 10)
    diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
    identity = BatteryIdentity(
        "battery", "", "40:D6:3C:3F:3E:5A", BatteryState.POWER_SUPPLY_TECHNOLOGY_LIFE, 0.0
    )
    stop = spin_in_background(ros_context, bridge, node)

    def status(name: str, hardware_id: str, state: str, error: str) -> DiagnosticStatus:
        values = {"link_state": state, "last_error": error, "reconnects": "3"}
        return DiagnosticStatus(
            name=name,
            hardware_id=hardware_id,
            level=DiagnosticStatus.ERROR,
            values=[KeyValue(key=key, value=value) for key, value in values.items()],
        )

    try:
        url = bridge.server.url

        def sample_served() -> bool:
            sample = real_sample(time.time())
            stamp = Time(sec=int(sample.received_at), nanosec=0)
            battery.publish(battery_state(sample, identity, stamp))
            cells.publish(daly_cells(sample, "battery", stamp))
            return get(url + "/bms/front")[0] == 200

        wait_until(sample_served, "a sample of /front")
        # The front node's link drops (known by the serial number its messages told); the
        # rear node never found its BMS (known by its fully qualified status name).
        down = [
            status("daly_bms: battery", "40:D6:3C:3F:3E:5A", "backoff", "BMS not found (hci0)"),
            status("/rear/daly_bms: battery", "DL-REAR", "connecting", ""),
            # A pack group never published: found by the fleet's status of its name.
            DiagnosticStatus(
                name="/daly_bms_fleet: group bank",
                hardware_id="bank",
                level=DiagnosticStatus.ERROR,
                message="not published: /rear: no state yet (group_max_age 5 s)",
            ),
        ]

        def told(name: str, link: str) -> bool:
            diagnostics.publish(DiagnosticArray(status=down))
            body = get(f"{url}/bms/{name}")[2]
            return bool(body["link"] == link)

        wait_until(lambda: told("front", "backoff: BMS not found (hci0)"), "the front's link")
        wait_until(lambda: told("rear", "connecting"), "the rear's link")
        wait_until(lambda: told("bank", down[2].message), "the group's state")
        assert scrape(url)[("daly_bms_link_state", (("battery", "front"), ("state", "backoff")))]
        # Connected by its diagnostics but no message: the node is not heard, "silent".
        down[0] = status("daly_bms: battery", "40:D6:3C:3F:3E:5A", "connected", "")
        wait_until(lambda: told("front", SILENT), "silent once the link is said to be up")
    finally:
        stop()
        bridge.close()
        bridge.destroy_node()
        node.destroy_node()
