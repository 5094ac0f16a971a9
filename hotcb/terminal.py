"""Run data printed to a person's terminal.

Reasons, actors, proposal texts, callback ids, metric names and errors come from the run
directory and from agents: a string with terminal control sequences in it (``ESC[2K``, a
carriage return, an OSC that sets the clipboard, a bidi override) would rewrite what the person
reads -- a proposal shown as another op, a ledger line hidden or forged. Every character that is
not printable is shown as its escape (``\\x1b``, ``\\r``, ``\\u202e``) instead.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with each non-printable character (``str.isprintable``) written as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
