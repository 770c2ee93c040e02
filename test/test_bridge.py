"""The HTTP/JSON bridge: real HTTP requests against the server, fed by real ROS topics or BLE."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from bluez_mock import NAME_PREFIX, bluez_mock, sim_process
from builtin_interfaces.msg import Time
from installed import program, ros_executable
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from real_frames import SETTINGS, STATUS, frame_bytes
from ros_spin import spin_in_background
from sensor_msgs.msg import BatteryState
from std_msgs.msg import String

from daly_bms_ros.bridge.files import DataDirectoryWriter
from daly_bms_ros.bridge.http_server import BridgeHttpServer
from daly_bms_ros.bridge.node import DalyBmsBridge
from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.msg import DalyCells
from daly_bms_ros.node.messages import BatteryIdentity, battery_state, daly_cells
from daly_bms_ros.protocol import BmsSample, FrameAssembler, decode_settings, decode_status

VIEWS = ("", "/summary", "/cells", "/temps")


def real_sample(received_at: float = 1795600000.0) -> BmsSample:
    [status] = FrameAssembler().feed(frame_bytes(STATUS))
    [settings] = FrameAssembler().feed(frame_bytes(SETTINGS))
    return BmsSample(
        dataclasses.replace(decode_status(status), mos_temperature=35.0),
        decode_settings(settings),
        received_at=received_at,
        device="DL-40D63C3F3E5A (40:D6:3C:3F:3E:5A)",
    )


def get(url: str) -> tuple[int, str, Any]:
    """Status, content type and body (parsed when JSON) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status, headers, data = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, data = error.code, error.headers, error.read()
    content_type = headers["Content-Type"]
    body = json.loads(data) if content_type == "application/json" else data.decode()
    return status, content_type, body


class FakeClock:
    """A monotonic clock the test moves by hand, to age samples without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextmanager
def serving(store: SampleStore) -> Iterator[str]:
    """Serve ``store`` on a free loopback port until the block ends; yield the URL."""
    server = BridgeHttpServer(store, port=0)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def serve_process(
    cli: str, name: str, *options: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``daly-bms serve`` of the virtual BMS ``name`` (on hci0) on a free port.

    Yield the process and the URL it announces; it is stopped with SIGINT when the block ends.
    """
    serve = subprocess.Popen(
        [cli, "serve", "--name", name, "--adapter", "hci0", "--port", "0", *options],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stderr is not None
        match = re.search(r"serving on (http://\S+)", serve.stderr.readline())
        assert match, "no URL announced"
        yield serve, match.group(1)
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(20)


@pytest.fixture
def served(clock: FakeClock) -> Iterator[tuple[SampleStore, str]]:
    store = SampleStore(["bms"], max_age=5.0, clock=clock)
    with serving(store) as url:
        yield store, url


def test_no_data_yet_is_503_with_the_reason(served: tuple[SampleStore, str]) -> None:
    _store, url = served
    for path in ("/health", "/bms", "/bms/summary", "/bms/formatted", "/bms/cells", "/bms/temps"):
        status, content_type, body = get(url + path)
        assert status == 503, path
        assert content_type == "application/json"
        battery = body["batteries"]["bms"] if path == "/health" else body
        assert battery["reason"] == "no sample received yet"
        assert battery["age_s"] is None


def test_every_view_of_a_fresh_sample(served: tuple[SampleStore, str], clock: FakeClock) -> None:
    store, url = served
    store.update("bms", real_sample())
    clock.now += 0.25
    status, _, health = get(url + "/health")
    assert status == 200
    assert health["status"] == "ok"
    assert health["batteries"]["bms"]["age_s"] == pytest.approx(0.25)
    _, _, full = get(url + "/bms")
    assert full["pack_voltage"] == pytest.approx(51.1)
    assert full["rated_capacity"] == pytest.approx(310.0)
    assert full["alarms"] == ["soc_low_2"]
    assert full["age_s"] == pytest.approx(0.25)
    _, _, summary = get(url + "/bms/summary")
    assert summary["soc"] == pytest.approx(8.7)
    assert summary["state"] == "idle"
    assert summary["cell_count"] == 16
    _, _, cells = get(url + "/bms/cells")
    assert [cell["cell"] for cell in cells["cells"]] == list(range(1, 17))
    assert cells["cells"][0]["voltage"] == pytest.approx(3.188)
    assert cells["cell_delta"] == pytest.approx(0.012)
    _, _, temperatures = get(url + "/bms/temps")
    assert temperatures["temperatures"] == [
        {"sensor": 1, "temperature": 23.0},
        {"sensor": 2, "temperature": 23.0},
    ]
    assert temperatures["mos_temperature"] == 35.0
    status, content_type, text = get(url + "/bms/formatted")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "pack voltage" in text and "51.10 V" in text and "0.2 s old" in text
    # The same views by battery name, each naming the BMS.
    for view in VIEWS:
        status, _, body = get(f"{url}/bms/bms{view}")
        assert status == 200
        assert body["device"] == "DL-40D63C3F3E5A (40:D6:3C:3F:3E:5A)"


def test_stale_data_is_refused(served: tuple[SampleStore, str], clock: FakeClock) -> None:
    store, url = served
    store.update("bms", real_sample())
    store.set_link("bms", "backoff: the BMS closed the link")
    clock.now += 7.5
    for view in VIEWS:
        status, _, body = get(url + "/bms" + view)
        assert status == 503
        assert body["error"] == "no_fresh_data"
        assert body["reason"] == "last sample 7.5 s old, older than max_age 5 s"
        assert body["link"] == "backoff: the BMS closed the link"
        assert "pack_voltage" not in body
    status, _, health = get(url + "/health")
    assert status == 503
    assert health["batteries"]["bms"]["fresh"] is False


def test_unknown_paths_and_methods_get_json_errors(served: tuple[SampleStore, str]) -> None:
    _store, url = served
    for path in ("/nope", "/bms/volts", "/bms/bms/cells/1", "/health/x", "/page/nope.js"):
        status, content_type, body = get(url + path)
        assert (status, content_type, body["error"]) == (404, "application/json", "not_found")
    host, port = url.removeprefix("http://").split(":")
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        connection = HTTPConnection(host, int(port), timeout=10)
        connection.request(method, "/bms", body=b"{}")
        response = connection.getresponse()
        assert response.status == 405
        assert response.getheader("Allow") == "GET, HEAD"
        assert json.loads(response.read())["error"] == "method_not_allowed"
        connection.close()
    connection = HTTPConnection(host, int(port), timeout=10)
    connection.request("HEAD", "/health")
    response = connection.getresponse()
    assert response.status == 503
    assert int(response.getheader("Content-Length")) > 0
    assert response.read() == b""
    connection.close()


def test_concurrent_requests_all_answered(served: tuple[SampleStore, str]) -> None:
    store, url = served
    store.update("bms", real_sample())
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: get(url + "/bms" + VIEWS[i % 4]), range(400)))
    assert all(status == 200 for status, _, _ in answers)
    assert all(body["battery"] == "bms" for _, _, body in answers)


def test_several_batteries_are_served_by_name(clock: FakeClock) -> None:
    store = SampleStore(["front", "rear"], max_age=5.0, clock=clock)
    server = BridgeHttpServer(store, port=0)
    server.start()
    try:
        store.update("front", real_sample())
        status, _, both = get(server.url + "/bms")
        assert status == 200
        assert both["batteries"]["front"]["pack_voltage"] == pytest.approx(51.1)
        assert both["batteries"]["rear"]["error"] == "no_fresh_data"
        assert get(server.url + "/bms/front/summary")[0] == 200
        assert get(server.url + "/bms/rear/summary")[0] == 503
        status, _, body = get(server.url + "/bms/summary")
        assert status == 404
        assert "front, rear" in body["detail"]
    finally:
        server.stop()


def test_data_files_are_replaced_whole(tmp_path: Path) -> None:
    store = SampleStore(["bms"], max_age=5.0)
    writer = DataDirectoryWriter(store, tmp_path, interval=0.001)
    writer.start()
    reads: list[dict[str, Any]] = []
    done = threading.Event()

    def feed() -> None:
        for i in range(300):
            store.update("bms", real_sample(1795600000.0 + i))
            time.sleep(0.001)
        done.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    while not done.is_set():
        for name in ("latest.json", "status.json"):
            try:
                text = (tmp_path / name).read_text()
            except FileNotFoundError:
                continue
            reads.append(json.loads(text))  # a half-written file would not parse
    feeder.join()
    writer.stop()
    assert len(reads) > 100
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["timestamp"] == 1795600000.0 + 299
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "ok"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["latest.json", "status.json"]


def wait_for_status(url: str, expected: int, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = get(url)
        if status == expected or time.monotonic() > deadline:
            assert status == expected, body
            return body
        time.sleep(0.05)


def test_bridge_node_serves_the_topics_of_two_batteries(
    ros_context: Context, tmp_path: Path
) -> None:
    bridge = DalyBmsBridge(
        context=ros_context,
        parameter_overrides=[
            Parameter("batteries", value=["/front", "/rear"]),
            Parameter("port", value=0),
            Parameter("data_dir", value=str(tmp_path)),
        ],
    )
    publisher_node = Node("battery_publisher", context=ros_context)
    publishers = {
        namespace: (
            publisher_node.create_publisher(BatteryState, f"/{namespace}/battery_state", 10),
            publisher_node.create_publisher(DalyCells, f"/{namespace}/cells", 10),
        )
        for namespace in ("front", "rear")
    }
    identity = BatteryIdentity("battery", "", "", BatteryState.POWER_SUPPLY_TECHNOLOGY_LIFE, 0.0)
    stop = spin_in_background(ros_context, bridge, publisher_node)
    try:
        url = bridge.server.url
        assert wait_for_status(url + "/health", 503)["status"] == "no_fresh_data"
        deadline = time.monotonic() + 20
        while get(url + "/bms/front")[0] != 200 and time.monotonic() < deadline:
            sample = dataclasses.replace(
                real_sample(time.time()), device="DL-FRONT (C6:6C:09:03:1B:9E)"
            )
            stamp = Time(sec=int(sample.received_at), nanosec=0)
            battery_publisher, cells_publisher = publishers["front"]
            battery_publisher.publish(battery_state(sample, identity, stamp))
            cells_publisher.publish(daly_cells(sample, "battery", stamp))
            time.sleep(0.1)
        status, _, front = get(url + "/bms/front")
        assert status == 200
        # At the resolution the BMS reports, without the messages' float32 noise.
        assert front["pack_voltage"] == 51.1
        assert front["soc"] == 8.7
        assert front["cell_voltages"][:3] == [3.188, 3.199, 3.199]
        assert front["device"] == "DL-FRONT (C6:6C:09:03:1B:9E)"
        formatted = get(url + "/bms/front/formatted")[2]
        assert formatted.splitlines()[1].split() == ["device", "DL-FRONT", "(C6:6C:09:03:1B:9E)"]
        assert front["cycles"] == 2
        assert front["alarms"] == ["soc_low_2"]
        assert front["rated_capacity"] == pytest.approx(310.0)
        assert front["link"] == "publishing"
        assert get(url + "/bms/rear")[0] == 503
        # A BatteryState without its DalyCells is not a sample.
        publishers["rear"][0].publish(battery_state(real_sample(), identity, Time(sec=5)))
        time.sleep(0.5)
        assert get(url + "/bms/rear")[0] == 503
        deadline = time.monotonic() + 5
        while not (tmp_path / "front" / "latest.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads((tmp_path / "front" / "latest.json").read_text())["cycles"] == 2
        assert not (tmp_path / "rear" / "latest.json").exists()
        # The node stops publishing: once the sample is stale the link is no longer "publishing".
        deadline = time.monotonic() + 20
        while get(url + "/bms/front")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, _, stale = get(url + "/bms/front")
        assert status == 503
        assert stale["link"].startswith("silent")
        # Port 0: the port actually bound is published, latched, for who subscribes later.
        urls: list[str] = []
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        publisher_node.create_subscription(
            String, "/daly_bms_bridge/url", lambda message: urls.append(message.data), latched
        )
        deadline = time.monotonic() + 20
        while not urls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert urls == [url]
    finally:
        stop()
        bridge.close()
        bridge.destroy_node()
        publisher_node.destroy_node()


BRIDGE = Path(ros_executable("daly_bms_bridge"))


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        ("port:=70000", "port"),
        ("batteries:=['/front','front']", "distinct namespaces"),
        ("mqtt_topic_prefix:=robot/+", "without '+', '#'"),
        ("mqtt_password_file:=/nonexistent", "No such file"),
        # rcl refuses such topic names with an exception: exit 1, restarted forever.
        ("batteries:=['/front#1']", "'/front#1' is not a namespace such as '/front'"),
        ("batteries:=['/1a']", "not a namespace"),
        ("batteries:=['/\u00e9']", "not a namespace"),
    ],
)
def test_bridge_refuses_a_bad_parameter(parameter: str, message: str) -> None:
    """Exit 2 and one line saying what is allowed (the MQTT settings are checked when on)."""
    result = subprocess.run(
        [str(BRIDGE), "--ros-args", "-p", parameter, "-p", "mqtt_host:=127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "invalid parameter" in line
    assert message in line


def test_serve_without_ros_over_ble(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = program("daly-bms")
    assert cli
    name = f"{NAME_PREFIX}HTTP1"
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(name, tmp_path):
            serve_until_summary(cli, name, tmp_path)
    latest = json.loads((tmp_path / "data" / "latest.json").read_text())
    assert len(latest["cell_voltages"]) == 16


def serve_until_summary(cli: str, name: str, tmp_path: Path) -> None:
    """Run ``daly-bms serve`` until its summary is served, then stop it with SIGINT."""
    options = ("--interval", "0.2", "--data-dir", str(tmp_path / "data"))
    with serve_process(cli, name, *options) as (serve, url):
        assert url.startswith("http://127.0.0.1:")
        summary = wait_for_status(url + "/bms/summary", 200)
        assert summary["cell_count"] == 16
        assert summary["link"] == "connected"
        assert 0 < summary["soc"] <= 100
    assert serve.returncode == 0
