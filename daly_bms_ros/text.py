"""Text from requests and from the air made safe to print: control characters escaped.

A name a BMS advertises, a version it tells, or the requester named in a service call ends up
in logs, terminals and diagnostics: a newline there forges a log line, an escape sequence
rewrites the user's terminal, a direction override reverses what follows. Such text passes
``printable`` where it enters the driver, so every output shows the same harmless form.
"""

from __future__ import annotations

#: The longest text kept from outside: names and versions are short; a longer one is cut.
MAX_TEXT_LENGTH = 200


def printable(text: str, limit: int = MAX_TEXT_LENGTH) -> str:
    r"""Return ``text`` with each unprintable character escaped as Python writes it (\n, \x1b).

    Longer than ``limit`` characters: cut there, with "..." to say so.
    """
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() else character.encode("unicode_escape").decode()
        for character in text
    )
