"""The bridge's live page in a real browser (Debian's chromium, driven by Playwright over CDP).

End to end: the virtual BMS on the BlueZ mock, ``daly-bms serve`` reading it over the real bleak,
the page in chromium. The page must show the values of the JSON it was sent, follow new samples,
and show stale data as stale: when the BMS goes quiet, and when the bridge itself is gone.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from bluez_mock import NAME_PREFIX, bluez_mock, sim_process
from installed import program
from test_bridge import real_sample, serve_process, serving

from daly_bms_ros.bridge.store import SampleStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is installed by scripts/setup.sh"
)
CLI = program("daly-bms")


@contextmanager
def browser_page() -> Iterator[Any]:
    """A page in a headless chromium, a phone's width; fails the test on any script error.

    Playwright's sync API runs an event loop in this thread while open: open it after whatever
    else needs asyncio.run (the BlueZ mock's start).
    """
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 420, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console", lambda message: errors.append(message.text) if message.type == "error" else 0
        )
        try:
            yield page
        finally:
            browser.close()
        # Failed loads are expected once the bridge is gone; script errors never are.
        assert not [error for error in errors if "Failed to load resource" not in error], errors


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}")


SHOWN = """() => {
  const fields = {};
  for (const node of document.querySelectorAll("#battery [data-field]")) {
    fields[node.dataset.field] = node.textContent;
  }
  const section = document.getElementById("battery");
  return {
    sampleTime: section.dataset.sampleTime,
    banner: document.getElementById("freshness").textContent,
    bannerClass: document.getElementById("freshness").className,
    connection: document.getElementById("connection").textContent,
    fields,
    cells: [...document.querySelectorAll("#cells .cell")].map((cell) => ({
      number: cell.dataset.cell, volts: cell.querySelector(".volts").textContent,
      classes: cell.className})),
    temperatures: [...document.querySelectorAll("#temperatures li")].map((li) => li.textContent),
    alarms: [...document.querySelectorAll("#alarms li")].map((li) => li.textContent),
    charts: document.querySelectorAll("#charts .uplot").length,
  };
}"""


def number(value: float | None, digits: int, unit: str) -> str:
    return "—" if value is None else f"{value:.{digits}f} {unit}"


def assert_shows(shown: dict[str, Any], record: dict[str, Any]) -> None:
    """The page shows what the JSON record says, at the page's resolution."""
    fields = shown["fields"]
    assert fields["soc"] == number(record["soc"], 1, "%")
    assert fields["pack_voltage"] == number(record["pack_voltage"], 2, "V")
    assert fields["current"] == number(record["current"], 1, "A")
    assert fields["power"] == number(record["power"], 0, "W")
    assert fields["state"] == record["state"]
    assert fields["cycles"] == str(record["cycles"])
    assert fields["min_cell_voltage"] == number(record["min_cell_voltage"], 3, "V")
    assert fields["max_cell_voltage"] == number(record["max_cell_voltage"], 3, "V")
    assert fields["min_cell_index"] == f"cell {record['min_cell_index']}"
    assert fields["cell_delta"] == f"{record['cell_delta'] * 1000:.0f} mV"
    assert fields["charge_mos"] == ("on" if record["charge_mos"] else "off")
    assert fields["discharge_mos"] == ("on" if record["discharge_mos"] else "off")
    assert [cell["volts"] for cell in shown["cells"]] == [
        f"{voltage:.3f}" for voltage in record["cell_voltages"]
    ]
    lowest = shown["cells"][record["min_cell_index"] - 1]
    assert "min" in lowest["classes"].split()
    balancing = record["balancing_cells"] or [False] * len(record["cell_voltages"])
    assert ["balancing" in cell["classes"].split() for cell in shown["cells"]] == balancing
    assert shown["temperatures"][: len(record["temperatures"])] == [
        f"sensor {n}: {t:.1f} °C" for n, t in enumerate(record["temperatures"], start=1)
    ]
    assert shown["alarms"] == (record["alarms"] or ["none"])


class Answers:
    """What the bridge sent the page on /batteries, by sample time (read off the responses)."""

    def __init__(self, page: Any) -> None:
        self._responses: list[Any] = []
        page.on(
            "response",
            lambda response: self._responses.append(response)
            if response.url.endswith("/batteries")
            else None,
        )

    def record_at(self, battery: str, sample_time: str) -> dict[str, Any]:
        for response in reversed(self._responses):
            try:
                entry = json.loads(response.body())["batteries"][battery]
            except Exception:  # a response of a bridge gone, or evicted: not this one
                continue
            if str(entry.get("timestamp")) == sample_time:
                return dict(entry)
        raise AssertionError(f"no answer of {battery} at {sample_time}")


def shown_sample(page: Any) -> dict[str, Any]:
    shown: dict[str, Any] = page.evaluate(SHOWN)
    return shown


def test_the_page_follows_the_virtual_bms_and_shows_staleness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CLI
    name = f"{NAME_PREFIX}PAGE1"
    with bluez_mock(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with sim_process(name, tmp_path) as sim, browser_page() as page:
            answers = Answers(page)
            with serve_process(CLI, name, "--interval", "0.2", "--max-age", "2") as (_, url):
                page.goto(url + "/")
                first = wait_until(
                    lambda: (shown := shown_sample(page))["sampleTime"] and shown,
                    timeout=40,
                    what="a live sample on the page",
                )
                assert first["banner"].startswith("live: sample")
                assert first["connection"] == "bridge connected"
                record = answers.record_at("bms", first["sampleTime"])
                assert record["device"].startswith(name)
                assert len(record["cell_voltages"]) == 16
                assert_shows(first, record)
                # The charts come with the history.
                wait_until(lambda: shown_sample(page)["charts"] == 3, what="three charts")
                # New samples replace the old ones on the page, without a reload.
                later = wait_until(
                    lambda: (shown := shown_sample(page))["sampleTime"]
                    not in ("", first["sampleTime"])
                    and shown,
                    what="a newer sample",
                )
                assert float(later["sampleTime"]) > float(first["sampleTime"])
                assert_shows(later, answers.record_at("bms", later["sampleTime"]))

                # The BMS goes quiet: past max_age the page says stale and shows no values.
                sim.control({"link": "sleep"})
                stale = wait_until(
                    lambda: (shown := shown_sample(page))["bannerClass"] == "banner stale"
                    and shown,
                    what="the stale banner",
                )
                assert stale["banner"].startswith("stale: last sample")
                assert stale["fields"]["soc"] == "—"
                assert stale["fields"]["pack_voltage"] == "—"
                assert stale["cells"] == []
            # The bridge is gone: nothing the page last heard passes for current.
            gone = wait_until(
                lambda: (shown := shown_sample(page))["connection"] == "bridge unreachable"
                and shown,
                what="the bridge unreachable",
            )
            assert gone["bannerClass"] == "banner stale"
            assert gone["fields"]["soc"] == "—"


def test_the_overview_of_several_batteries() -> None:
    store = SampleStore(["front", "rear"], max_age=5.0)
    store.update("front", real_sample(time.time()))
    store.set_link("front", "connected")
    with serving(store) as url, browser_page() as page:
        page.goto(url + "/")
        page.wait_for_selector("#cards .card[data-battery='rear']")
        front = page.locator("#cards .card[data-battery='front']")
        rear = page.locator("#cards .card[data-battery='rear']")
        assert front.locator(".big").text_content() == "8.7 %"
        assert "51.10 V" in (front.text_content() or "")
        assert "soc_low_2" in (front.text_content() or "")
        assert "stale" in (rear.get_attribute("class") or "").split()
        assert "stale: no sample received yet" in (rear.text_content() or "")
        front.click()  # to the battery's own view
        # (wait_for_function would evaluate a string: the page's CSP forbids it, rightly)
        shown = wait_until(
            lambda: (shown := shown_sample(page))["sampleTime"] and shown, what="the battery"
        )
        # The store holds one sample: the bridge's answer now is the one the page rendered.
        record = json.loads(
            page.evaluate("async () => JSON.stringify(await (await fetch('/bms/front')).json())")
        )
        assert_shows(shown, record)
        assert page.evaluate("location.hash") == "#front"


def test_a_page_error_never_leaves_a_view_that_claims_to_be_live() -> None:
    """A hash that does not decode, then a rendering that fails: the page polls on and says so.

    "#%" made decodeURIComponent throw in every rendering, and the poll was never scheduled
    again: the page showed nothing, or kept its last view with "live" on it, for good.
    """
    store = SampleStore(["bms"], max_age=5.0)
    store.update("bms", real_sample(time.time()))
    with serving(store) as url, browser_page() as page:
        page.goto(url + "/#%")
        first = wait_until(
            lambda: (shown := shown_sample(page))["sampleTime"] and shown, what="a live sample"
        )
        assert first["banner"].startswith("live: sample")
        store.update("bms", real_sample(time.time() + 1.0))
        wait_until(
            lambda: shown_sample(page)["sampleTime"] not in ("", first["sampleTime"]),
            what="the next sample (the page polls on)",
        )
        # The page cannot render (an element it fills is gone): it says so, not "live".
        page.evaluate("() => { document.getElementById('cells').id = 'away'; }")
        failed = wait_until(
            lambda: (shown := shown_sample(page))["connection"] == "page error" and shown,
            what="the page's error state",
        )
        assert failed["bannerClass"] == "banner stale"
        assert failed["banner"].startswith("error: the page cannot show")
        # ... and polls on: once it can render again, it is live again.
        page.evaluate("() => { document.getElementById('away').id = 'cells'; }")
        store.update("bms", real_sample(time.time() + 2.0))
        wait_until(
            lambda: (shown := shown_sample(page))["banner"].startswith("live: sample")
            and shown["connection"] == "bridge connected"
            and len(shown["cells"]) == 16,
            what="the live view again",
        )
