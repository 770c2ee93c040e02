"""Texts from requests and from the air are shown with their control characters escaped."""

from __future__ import annotations

from daly_bms_ros.text import printable


def test_control_characters_are_escaped_and_printable_text_is_kept() -> None:
    assert printable("DL-40D63C3F3E5A") == "DL-40D63C3F3E5A"
    assert printable("Ünïcode ✓") == "Ünïcode ✓"
    assert printable("dock\nwrite by root: x") == "dock\\nwrite by root: x"
    assert printable("DL-\x1b[2J\r") == "DL-\\x1b[2J\\r"
    assert printable("abc\u202edef") == "abc\\u202edef"  # a right-to-left override
    assert printable("bad \udcff byte") == "bad \\udcff byte"  # undecodable, as surrogateescape


def test_a_text_longer_than_any_name_is_cut_and_says_so() -> None:
    assert printable("A" * 201) == "A" * 200 + "..."
    assert printable("A" * 200) == "A" * 200
