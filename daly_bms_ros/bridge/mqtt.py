"""MQTT output of the store (``paho-mqtt``), with Home Assistant's MQTT discovery.

Topics, under ``topic_prefix`` (default ``daly_bms``):

- ``<prefix>/status``: ``online`` / ``offline``, retained; ``offline`` is also the last will, so
  the broker tells when the bridge vanishes.
- ``<prefix>/<battery>/availability``: ``online`` while the battery has a fresh sample, else
  ``offline`` (retained): Home Assistant greys its entities instead of showing old values.
- ``<prefix>/<battery>/state``: the battery's full JSON record (the HTTP ``/bms`` view), every
  ``interval`` seconds while fresh. Not retained: a value read later is not current.
- ``<prefix>/<battery>/link``: the link's state (``connected``, ``backoff: …``), retained, when
  it changes.
- ``<discovery_prefix>/<component>/daly_bms_<device>/<key>/config``: one retained config per
  entity (sensors with device class, unit and state class; binary sensors for the MOS switches,
  balancing and alarms) of the device ``device_slug`` names, sent once the battery's first
  sample tells its cells and sensors, again on every connection to the broker (a broker
  restarted without persistence forgets them), and removed (an empty retained message) for
  entities a battery no longer has.

The output is read-only: no command topic is subscribed. paho's own thread keeps the connection
and reconnects with backoff; a broker that cannot be reached is reported as the problem ``mqtt``
(``/health`` says ``output_failing``) until it answers again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from daly_bms_ros.bridge.store import Reading, SampleStore
from daly_bms_ros.bridge.views import battery_view
from daly_bms_ros.protocol import BmsSample

LOG = logging.getLogger(__name__)
#: The name under which a failing broker shows in the store's problems.
MQTT_PROBLEM = "mqtt"
ONLINE, OFFLINE = "online", "offline"


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to publish; settings no broker could serve are refused when made."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    #: TLS to the broker; ``ca_file`` None trusts the system's certificate authorities.
    tls: bool = False
    ca_file: str | None = None
    topic_prefix: str = "daly_bms"
    discovery_prefix: str = "homeassistant"
    #: Seconds between state messages of a battery.
    interval: float = 5.0
    client_id: str = ""
    keepalive: int = 30

    def __post_init__(self) -> None:
        """Raise ValueError, saying what is allowed, for settings no broker could serve."""
        if not self.host.strip():
            raise ValueError("the MQTT broker's host must be named, e.g. 127.0.0.1")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"MQTT port {self.port} is not a TCP port (1 to 65535)")
        for what, prefix in (
            ("topic prefix", self.topic_prefix),
            ("discovery prefix", self.discovery_prefix),
        ):
            if not re.fullmatch(r"[^/#+\s]+(/[^/#+\s]+)*", prefix):
                raise ValueError(
                    f"MQTT {what} {prefix!r}: levels separated by '/', none empty, "
                    "without '+', '#' or spaces"
                )
        if not 0.1 <= self.interval <= 3600:
            raise ValueError(f"MQTT interval {self.interval:g} s: from 0.1 to 3600 s")
        if self.ca_file is not None and not self.tls:
            raise ValueError("an MQTT CA file is used only with TLS: enable TLS too")


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity of a battery: its discovery topic and config."""

    component: str
    key: str
    config: dict[str, Any]


#: Sensors of every battery: key, name, device class, unit, state class, template of the record.
_SENSORS = (
    ("pack_voltage", "Voltage", "voltage", "V", "measurement", "value_json.pack_voltage"),
    ("current", "Current", "current", "A", "measurement", "value_json.current"),
    ("power", "Power", "power", "W", "measurement", "value_json.power"),
    ("soc", "State of charge", "battery", "%", "measurement", "value_json.soc"),
    ("remaining_capacity", "Remaining capacity", None, "Ah", "measurement",
     "value_json.remaining_capacity"),
    ("cycles", "Charge cycles", None, None, "total_increasing", "value_json.cycles"),
    ("min_cell_voltage", "Lowest cell", "voltage", "V", "measurement",
     "value_json.min_cell_voltage"),
    ("max_cell_voltage", "Highest cell", "voltage", "V", "measurement",
     "value_json.max_cell_voltage"),
    ("cell_delta", "Cell voltage delta", "voltage", "V", "measurement", "value_json.cell_delta"),
    ("mos_temperature", "MOS temperature", "temperature", "°C", "measurement",
     "value_json.mos_temperature"),
)  # fmt: skip
#: Binary sensors: key, name, device class, the record's truth.
_BINARY_SENSORS = (
    ("charge_mos", "Charge MOS", "power", "value_json.charge_mos"),
    ("discharge_mos", "Discharge MOS", "power", "value_json.discharge_mos"),
    ("balancing", "Balancing", None, "value_json.balancing"),
    ("alarm", "Alarm", "problem", "value_json.alarms | length > 0"),
)


#: A Bluetooth device's address at the end of its text, "NAME (C6:6C:09:03:1B:9E)" (a UUID on
#: macOS); a wired BMS's text ends in its speed, "/dev/ttyUSB0 (9600 baud)".
_BLUETOOTH_ADDRESS = re.compile(r"\(([0-9A-Fa-f]+(?:[:-][0-9A-Fa-f]+)+)\)$")
#: Characters of the readable part of a device id (Home Assistant's node ids: [a-zA-Z0-9_-]).
_READABLE_LENGTH = 40


def device_slug(reading: Reading, battery: str, topic_prefix: str) -> str | None:
    """Return the id of the battery's Home Assistant device, unique on the broker; None: unknown.

    A Bluetooth BMS is its address, so that a BMS renamed in Daly's app stays the same device.
    Any other is its reader's identity for it (a wired BMS: its serial number, else its port
    and board), mapped to Home Assistant's characters and followed by a short hash of the
    identity and the topic prefix: identities that map alike ("/dev/ttyUSB0", "dev_ttyUSB0")
    stay two devices, and so do the batteries of two bridges on one broker (their own topic
    prefixes) with the same port. (Every wired BMS was once "9600_baud", from its link's text.)
    None until the reader knows the identity: an announcement under a passing id would leave
    a device behind in Home Assistant.
    """
    address = _BLUETOOTH_ADDRESS.search(reading.sample.device) if reading.sample else None
    if address:
        return re.sub(r"[^0-9a-z]", "_", address.group(1).lower())
    if reading.identity is None:
        return None
    identity = reading.identity or battery
    readable = re.sub(r"[^0-9a-z]+", "_", identity.lower()).strip("_")[:_READABLE_LENGTH]
    digest = hashlib.sha256(f"{topic_prefix}\n{identity}".encode()).hexdigest()[:8]
    return f"{readable.rstrip('_')}_{digest}" if readable else digest


def entities(
    sample: BmsSample, battery: str, slug: str, settings: MqttSettings
) -> Iterator[Entity]:
    """Yield the Home Assistant entities of ``battery``, device ``slug``, as its sample shows."""
    base = f"{settings.topic_prefix}/{battery}"
    common = {
        "state_topic": f"{base}/state",
        "availability": [
            {"topic": f"{settings.topic_prefix}/status"},
            {"topic": f"{base}/availability"},
        ],
        "availability_mode": "all",
        "device": {
            "identifiers": [f"daly_bms_{slug}"],
            "name": f"Daly BMS {battery}",
            "manufacturer": "Daly",
            "model": "Smart BMS",
        },
    }

    def sensor(key: str, name: str, device_class: str | None, unit: str | None,
               state_class: str, template: str) -> Entity:  # fmt: skip
        config: dict[str, Any] = {
            **common,
            "name": name,
            "unique_id": f"daly_bms_{slug}_{key}",
            "value_template": f"{{{{ {template} }}}}",
            "state_class": state_class,
        }
        if unit == "V":
            config["suggested_display_precision"] = 3 if "cell" in key else 2
        if device_class is not None:
            config["device_class"] = device_class
        if unit is not None:
            config["unit_of_measurement"] = unit
        return Entity("sensor", key, config)

    for row in _SENSORS:
        yield sensor(*row)
    for number in range(1, len(sample.status.cell_voltages) + 1):
        yield sensor(f"cell_{number}", f"Cell {number}", "voltage", "V", "measurement",
                     f"value_json.cell_voltages[{number - 1}]")  # fmt: skip
    for number in range(1, len(sample.status.temperatures) + 1):
        yield sensor(f"temperature_{number}", f"Temperature {number}", "temperature", "°C",
                     "measurement", f"value_json.temperatures[{number - 1}]")  # fmt: skip
    for key, name, device_class, truth in _BINARY_SENSORS:
        config = {
            **common,
            "name": name,
            "unique_id": f"daly_bms_{slug}_{key}",
            "value_template": f"{{{{ 'ON' if {truth} else 'OFF' }}}}",
        }
        if device_class is not None:
            config["device_class"] = device_class
        if key == "alarm":
            config["json_attributes_topic"] = f"{base}/state"
            config["json_attributes_template"] = "{{ {'alarms': value_json.alarms} | tojson }}"
        yield Entity("binary_sensor", key, config)
    yield Entity(
        "sensor",
        "link",
        {
            **common,
            # Told also while the battery is away: that is when it matters.
            "state_topic": f"{base}/link",
            "availability": [{"topic": f"{settings.topic_prefix}/status"}],
            "name": "Link",
            "unique_id": f"daly_bms_{slug}_link",
            "entity_category": "diagnostic",
        },
    )


class MqttPublisher:
    """Publish a store's batteries to an MQTT broker, from paho's thread and one of its own."""

    def __init__(self, store: SampleStore, settings: MqttSettings) -> None:
        self._store = store
        self._settings = settings
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            reconnect_on_failure=True,
        )
        if settings.username is not None:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            self._client.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.will_set(self._status_topic, OFFLINE, qos=1, retain=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        #: Why the broker refused the last connection (bad credentials, …), until one succeeds.
        self._refusal: str | None = None
        self._lock = threading.Lock()
        #: Per battery: the discovery topics last announced (to remove those it no longer has).
        self._announced: dict[str, dict[str, str]] = {}
        #: Per topic: the retained value last published.
        self._retained: dict[str, str] = {}
        self._connected = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="daly_bms_mqtt", daemon=True)

    @property
    def _status_topic(self) -> str:
        return f"{self._settings.topic_prefix}/status"

    def start(self) -> None:
        """Connect in the background (a broker down now is retried) and publish."""
        self._store.report_problem(MQTT_PROBLEM, "not connected to the broker yet")
        self._client.connect_async(
            self._settings.host, self._settings.port, keepalive=self._settings.keepalive
        )
        self._client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        """Say ``offline``, disconnect and stop both threads."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._connected:
            self._client.publish(self._status_topic, OFFLINE, qos=1, retain=True).wait_for_publish(
                2.0
            )
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: Any,
        _properties: Any,
    ) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            self._store.report_problem(
                MQTT_PROBLEM, self._where(f"refused the connection: {reason}")
            )
            return
        self._refusal = None
        LOG.info("connected to MQTT broker %s:%d", self._settings.host, self._settings.port)
        with self._lock:
            self._connected = True
            # A broker restarted without persistence forgot the retained messages: say all again.
            self._announced.clear()
            self._retained.clear()
        self._client.publish(self._status_topic, ONLINE, qos=1, retain=True)
        self._store.report_problem(MQTT_PROBLEM, None)
        self.publish()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        with self._lock:
            self._connected = False
        if self._stopping.is_set():
            return
        if self._refusal is not None:  # the connection was refused: that is the news
            return
        LOG.warning("MQTT broker connection lost (%s); reconnecting", reason)
        self._store.report_problem(MQTT_PROBLEM, self._where(f"connection lost ({reason})"))

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._store.report_problem(
            MQTT_PROBLEM, self._where("cannot be reached (connection or TLS handshake failed)")
        )

    def _where(self, what: str) -> str:
        """Name the broker in a problem, and say it is retried."""
        return f"MQTT broker {self._settings.host}:{self._settings.port} {what}; retrying"

    def _run(self) -> None:
        while not self._stopping.wait(self._settings.interval):
            self.publish()

    def publish(self) -> None:
        """Publish each battery's availability, discovery (when new) and fresh state."""
        with self._lock:
            if not self._connected:
                return
            for battery in self._store.names:
                self._publish_battery(battery)

    def _publish_battery(self, battery: str) -> None:
        status, record = battery_view(self._store, battery, "")
        reading = self._store.get(battery)
        slug = device_slug(reading, battery, self._settings.topic_prefix)
        base = f"{self._settings.topic_prefix}/{battery}"
        if reading.sample is not None and slug is not None:
            self._announce(battery, reading.sample, slug)
        self._retain(f"{base}/availability", ONLINE if status == 200 else OFFLINE)
        self._retain(f"{base}/link", record["link"])
        if status == 200:
            self._client.publish(f"{base}/state", json.dumps(record), qos=0)

    def _retain(self, topic: str, value: str) -> None:
        """Publish ``value`` retained on ``topic`` when it differs from the last one sent."""
        if self._retained.get(topic) != value:
            self._client.publish(topic, value, qos=1, retain=True)
            self._retained[topic] = value

    def _announce(self, battery: str, sample: BmsSample, slug: str) -> None:
        """Send the discovery configs that changed; remove those of entities gone."""
        wanted = {
            f"{self._settings.discovery_prefix}/{entity.component}/daly_bms_{slug}/{entity.key}"
            "/config": json.dumps(entity.config)
            for entity in entities(sample, battery, slug, self._settings)
        }
        announced = self._announced.get(battery, {})
        if wanted == announced:
            return
        for topic in announced.keys() - wanted.keys():
            self._client.publish(topic, b"", qos=1, retain=True)
        for topic, config in wanted.items():
            if announced.get(topic) != config:
                self._client.publish(topic, config, qos=1, retain=True)
        self._announced[battery] = wanted
