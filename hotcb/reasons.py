"""Whether a reason is its writer's own words.

A model that undoes a protective change or rolls a run back must say why in a sentence of its
own: at least ``MIN_OWN_WORDS`` words, and not (mostly) a copy of a text it was shown -- an alert,
a rule's message, an earlier refusal. A small model answers a refusal with the refusal's own
words (a 1.5B model tried three times to roll a healthy run back, its reasons copied alert and
refusal text), and such a "reason" says nothing a reader of the ledger could agree with.

The judge applies this to the ops it covers (``hotcb.judge``); the built-in autopilot asks the
same functions early, over what it showed its model. Reasons and shown texts are hostile input:
only a bounded prefix of each is compared, so a huge or odd string costs a bounded amount of work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

MIN_OWN_WORDS = 4
# A reason whose longest run shared with one shown text covers this much of it is a copy.
COPIED_SHARE = 0.6
# Normalised characters of a reason compared: the test makes at most ~0.4 x this many substring
# searches, so this bounds the work whatever the reason's length.
MAX_COMPARED = 600
MAX_SHOWN = 2000  # characters of one shown text compared (the ledger stores at most 2000)
# Normalised characters of all shown texts compared together; past it the oldest (passed first)
# are left out. Two 64 KiB record tails fit whole.
MAX_SHOWN_TOTAL = 256 << 10
_NOT_WORD = re.compile(r"[^\w.%-]+")
_SPACES = re.compile(r"\s+")
# Never in a normalised text (whitespace collapses to one space): a match cannot span two texts.
_SEP = "\n"


def normalize(text: Any, limit: int = MAX_COMPARED) -> str:
    """``text`` lower-cased, punctuation and whitespace collapsed to single spaces, at most
    ``limit`` characters; anything but a string is no text at all."""
    if not isinstance(text, str):
        return ""
    # Runs of punctuation collapse to one space: a prefix some times longer than ``limit`` is
    # enough for all but a text made mostly of them.
    raw = text[: 8 * limit]
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", raw.lower())).strip()[:limit]


def copied_from(reason: Any, shown: Iterable[Any]) -> str | None:
    """The shown text ``reason`` is (mostly) a copy of, or None: the longest run of characters it
    shares with that text covers ``COPIED_SHARE`` of it (compared normalised)."""
    mine = normalize(reason)
    if not mine:
        return None
    texts: list[str] = []
    normed: list[str] = []
    total = 0
    for text in reversed([t for t in shown if isinstance(t, str) and t]):
        n = normalize(text, MAX_SHOWN)
        total += len(n) + 1
        if total > MAX_SHOWN_TOTAL:
            break
        texts.append(text)
        normed.append(n)
    # A common run of ``need`` characters exists iff some window of ``mine`` that long occurs in
    # a shown text: C-speed substring searches instead of a quadratic longest match per text (the
    # same answer as difflib's find_longest_match). Every such window holds the middle of
    # ``mine`` (``core``), so only the texts holding it are searched, and most reasons stop there.
    need = max(1, math.ceil(COPIED_SHARE * len(mine)))
    core = mine[len(mine) - need:need]
    hits = [i for i, n in enumerate(normed) if core in n]
    if not hits:
        return None
    hay = _SEP.join(normed[i] for i in hits)
    for i in range(len(mine) - need + 1):
        at = hay.find(mine[i:i + need])
        if at >= 0:
            return texts[hits[hay.count(_SEP, 0, at)]]
    return None


def copied(reason: Any, shown: Iterable[Any]) -> bool:
    """``reason`` is (mostly) a copy of a text its writer was shown."""
    return copied_from(reason, shown) is not None


def own_words_refusal(reason: Any, shown: Iterable[Any], act: str = "a veto of a protective rule") -> str | None:
    """Why ``reason`` cannot carry ``act`` (None: it can): it needs at least ``MIN_OWN_WORDS``
    words and must not be (mostly) a copy of any of the texts in ``shown``."""
    if len(normalize(reason).split()) < MIN_OWN_WORDS:
        return f"{act} needs a reason in your own words (at least {MIN_OWN_WORDS} words)"
    source = copied_from(reason, shown)
    if source is not None:
        quote = source if len(source) <= 80 else source[:77] + "..."
        return f"{act} needs a reason of your own, not copied alert, rule or refusal text (it repeats {quote!r})"
    return None
