"""``/metrics``: the store in Prometheus's exposition format, through ``prometheus_client``.

A collector reads the store at each scrape (no second copy of the values to keep in step). Each
metric carries the label ``battery``. A battery without a fresh sample exports only
``daly_bms_up 0``, its sample age, link state and counters: its values are left out, not
repeated, so that Prometheus marks them stale instead of charting old numbers as new. Units
follow Prometheus's naming (volts, amperes, watts, celsius, seconds; SOC as a 0..1 ratio).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.bridge.views import freshness
from daly_bms_ros.protocol import BmsSample
from daly_bms_ros.report import cell_balancing, rated_capacity

#: The Content-Type of the exposition format.
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _field(sample: BmsSample, name: str) -> float:
    """Return a count or switch of the status as a number; NaN (left out) if listed invalid."""
    status = sample.status
    return math.nan if name in status.invalid else float(getattr(status, name))


#: Gauges of one value per battery: name, help, and how the sample gives it.
_PACK_GAUGES = (
    ("voltage_volts", "pack voltage", lambda s: s.status.pack_voltage),
    ("current_amperes", "pack current, negative when discharging", lambda s: s.status.current),
    ("power_watts", "pack power, negative when discharging", lambda s: s.status.power),
    ("state_of_charge_ratio", "state of charge, 0..1", lambda s: s.status.soc / 100.0),
    ("remaining_capacity_ampere_hours", "charge left", lambda s: s.status.remaining_capacity),
    ("rated_capacity_ampere_hours", "rated capacity", rated_capacity),
    ("charge_cycles", "charge cycles the BMS counted", lambda s: _field(s, "cycles")),
    ("cell_voltage_delta_volts", "highest minus lowest cell", lambda s: s.status.cell_delta),
    ("balance_current_amperes", "balancing current", lambda s: s.status.balance_current),
    ("charge_mos_on", "1 when the charge MOSFET conducts", lambda s: _field(s, "charge_mos")),
    (
        "discharge_mos_on",
        "1 when the discharge MOSFET conducts",
        lambda s: _field(s, "discharge_mos"),
    ),
    ("balancing", "1 when the balancer runs", lambda s: _field(s, "balancing")),
    ("alarms_active", "alarms the BMS reports now", lambda s: float(len(s.status.alarms))),
)


class StoreCollector(Collector):
    """Every battery of a store as Prometheus metrics, read at scrape time."""

    def __init__(self, store: SampleStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families of every battery."""
        up = GaugeMetricFamily("daly_bms_up", "1 when a fresh sample is served", labels=["battery"])
        age = GaugeMetricFamily(
            "daly_bms_sample_age_seconds", "age of the latest sample", labels=["battery"]
        )
        link = GaugeMetricFamily(
            "daly_bms_link_state", "1 for the link's current state", labels=["battery", "state"]
        )
        reconnects = CounterMetricFamily(
            "daly_bms_reconnects", "links rebuilt after a loss", labels=["battery"]
        )
        rejected = CounterMetricFamily(
            "daly_bms_rejected_frames", "frames dropped, by reason", labels=["battery", "reason"]
        )
        packs = {
            name: GaugeMetricFamily(f"daly_bms_{name}", text, labels=["battery"])
            for name, text, _ in _PACK_GAUGES
        }
        cells = GaugeMetricFamily(
            "daly_bms_cell_voltage_volts", "voltage of one cell", labels=["battery", "cell"]
        )
        cell_balancing_family = GaugeMetricFamily(
            "daly_bms_cell_balancing", "1 while the cell is balanced", labels=["battery", "cell"]
        )
        temperatures = GaugeMetricFamily(
            "daly_bms_temperature_celsius",
            "temperature sensors, MOS switches and board",
            labels=["battery", "sensor"],
        )
        alarm = GaugeMetricFamily(
            "daly_bms_alarm", "1 for each alarm the BMS reports", labels=["battery", "alarm"]
        )
        for name in self._store.names:
            sample, facts = freshness(self._store, name)
            up.add_metric([name], 0.0 if sample is None else 1.0)
            age.add_metric([name], math.nan if facts["age_s"] is None else facts["age_s"])
            link.add_metric([name, facts["link"].split(":", 1)[0]], 1.0)
            counters = self._store.get(name).counters
            if counters is not None:
                reconnects.add_metric([name], float(counters.reconnects))
                for reason, count in sorted(counters.rejected.items()):
                    rejected.add_metric([name, reason], float(count))
            if sample is None:
                continue
            for metric_name, _, value_of in _PACK_GAUGES:
                _add_known(packs[metric_name], [name], value_of(sample))
            balancing = cell_balancing(sample.status)
            for number, voltage in enumerate(sample.status.cell_voltages, start=1):
                _add_known(cells, [name, str(number)], voltage)
                flag = balancing[number - 1]
                if flag is not None:
                    cell_balancing_family.add_metric([name, str(number)], float(flag))
            for sensor, value in _temperatures(sample):
                _add_known(temperatures, [name, sensor], value)
            for active in sample.status.alarms:
                alarm.add_metric([name, active], 1.0)
        yield from (up, age, link, reconnects, rejected, *packs.values())
        yield from (cells, cell_balancing_family, temperatures, alarm)


def _temperatures(sample: BmsSample) -> Iterator[tuple[str, float]]:
    for number, value in enumerate(sample.status.temperatures, start=1):
        yield str(number), value
    yield "mos", sample.mos_temperature
    yield "board", sample.status.board_temperature


def _add_known(family: GaugeMetricFamily, labels: list[str], value: float) -> None:
    """Add a value the BMS told; an unknown one (NaN) is left out rather than exported as NaN."""
    if not math.isnan(value):
        family.add_metric(labels, value)


def registry_of(store: SampleStore) -> CollectorRegistry:
    """Return a registry of the store alone (not the process's global one: one per server)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Return the registry's metrics, as a scrape answer's body."""
    return generate_latest(registry)
