"""The bridge's answers: a status code and a JSON body (or plain text) per battery and view.

Every data answer carries ``age_s``, the seconds since the sample arrived; a battery without a
sample younger than ``max_age`` gets 503 with the reason, never old values dressed as new.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from http import HTTPStatus
from typing import Any

from daly_bms_ros.bridge.store import SampleStore
from daly_bms_ros.protocol import BmsSample
from daly_bms_ros.report import (
    cells_record,
    sample_record,
    summary_record,
    temperatures_record,
    text_report,
)

#: View name (the last path segment) and what it shows of a sample.
JSON_VIEWS: dict[str, Callable[[BmsSample], dict[str, Any]]] = {
    "": sample_record,
    "summary": summary_record,
    "cells": cells_record,
    "temps": temperatures_record,
}
TEXT_VIEW = "formatted"
VIEWS = (*JSON_VIEWS, TEXT_VIEW)


def freshness(store: SampleStore, name: str) -> tuple[BmsSample | None, dict[str, Any]]:
    """Return the sample if it is fresh, and the facts about its age and link, for any answer."""
    reading = store.get(name)
    age = store.age(reading)
    stale = age is None or age > store.max_age
    facts: dict[str, Any] = {
        "battery": name,
        "age_s": None if age is None else round(age, 3),
        "link": store.link(reading, stale),
    }
    if reading.sample is None or age is None:
        facts["reason"] = "no sample received yet"
        return None, facts
    if age > store.max_age:
        facts["reason"] = f"last sample {age:.1f} s old, older than max_age {store.max_age:g} s"
        return None, facts
    return reading.sample, facts


def battery_view(store: SampleStore, name: str, view: str) -> tuple[HTTPStatus, Any]:
    """One view of one battery: 200 with the data, or 503 with the reason there is none."""
    sample, facts = freshness(store, name)
    if sample is None:
        return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no_fresh_data", **facts}
    if view == TEXT_VIEW:
        header = f"battery {name}, sample {facts['age_s']:.1f} s old\n"
        return HTTPStatus.OK, header + text_report(sample) + "\n"
    # Every view names the BMS that answered, not only the full record.
    return HTTPStatus.OK, {**facts, "device": sample.device, **JSON_VIEWS[view](sample)}


def health(store: SampleStore, ignoring: Collection[str] = ()) -> tuple[HTTPStatus, dict[str, Any]]:
    """200 when every battery has fresh data and every output works, else 503, with reasons.

    ``status`` is "ok", "no_fresh_data" (a battery has none) or "output_failing" (e.g. the data
    directory cannot be written; ``problems`` says why). ``ignoring``: problems an output knows
    to be over (the data directory, while it writes this very answer).
    """
    batteries = {}
    for name in store.names:
        sample, facts = freshness(store, name)
        batteries[name] = {"fresh": sample is not None, **facts}
    problems = {k: v for k, v in store.problems().items() if k not in ignoring}
    if not all(battery["fresh"] for battery in batteries.values()):
        status = "no_fresh_data"
    elif problems:
        status = "output_failing"
    else:
        status = "ok"
    body = {
        "status": status,
        "max_age_s": store.max_age,
        "batteries": batteries,
        "problems": problems,
    }
    return (HTTPStatus.OK if status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE), body


def all_batteries(store: SampleStore) -> tuple[HTTPStatus, dict[str, Any]]:
    """Every battery's full record (or its reason for none); 200 when at least one is fresh."""
    answers = {name: battery_view(store, name, "") for name in store.names}
    any_fresh = any(status is HTTPStatus.OK for status, _ in answers.values())
    return (
        HTTPStatus.OK if any_fresh else HTTPStatus.SERVICE_UNAVAILABLE,
        {"batteries": {name: body for name, (_, body) in answers.items()}},
    )


def history_view(store: SampleStore, name: str) -> tuple[HTTPStatus, dict[str, Any]]:
    """Return the recent points of a battery (wall-clock s; null where the BMS told nothing).

    Always 200: history is history. The facts of ``freshness`` come with it, so a reader
    knows whether the last point is current.
    """
    _, facts = freshness(store, name)
    points = store.history(name)
    return HTTPStatus.OK, {
        **facts,
        "window_s": store.history_window,
        "time": points.times,
        "pack_voltage": points.pack_voltage,
        "current": points.current,
        "soc": points.soc,
    }
