"""One bound on the points a metrics store holds, shared by all its series.

Each series is bounded on its own (``recent_cap`` exact points, ``history_cap`` sampled ones),
but a run directory is hostile input: a run that logs hundreds of thousands of distinct metric
names would make the server hold names x (2 x recent + history) points. The budget keeps the
full caps while the names fit (a normal run is answered exactly as before); past that, every
series' caps halve together each time the names outgrow them, down to a floor; a name past what
the floor allows is counted, not held.
"""

from __future__ import annotations

from dataclasses import dataclass

# A held point costs about 40-64 bytes (a list slot and a float for its value, its step's float
# shared or not), so 4M points stay under ~250 MB, and 333 names keep the full caps (5,000 recent,
# 2,000 history: 12,000 points each at most): more names than a run logs unless it logs them
# per sample or per parameter. A held name costs ~1 KB more (its series and lists): 50 MB at the
# floor's 50,000 names. Measured peak RSS of a process tailing such runs (35 MiB before the
# store): 226 MiB (333 names in full), 269 MiB (50,000 names at the floor).
TOTAL_POINTS = 4_000_000
RECENT_FLOOR = 32  # exact points a series keeps at least: a short trend window
HISTORY_FLOOR = 16  # sampled points: the run's shape, coarsely
UNHELD_TRACKED = 100_000  # names not held that are told apart (a set of hashes, ~6 MB); later ones not counted


@dataclass(frozen=True)
class Caps:
    recent: int
    history: int

    @property
    def points(self) -> int:
        """The most points one series holds at rest: its recent list trims at twice ``recent``."""
        return 2 * self.recent + self.history


class PointBudget:
    """The caps every series gets while a given number of names are held."""

    def __init__(self, recent_cap: int, history_cap: int, total: int = TOTAL_POINTS):
        self.full = Caps(recent_cap, history_cap)
        self.floor = Caps(min(RECENT_FLOOR, recent_cap), min(HISTORY_FLOOR, history_cap))
        self.total = total
        self.max_names = max(1, total // self.floor.points)

    def caps(self, names: int) -> Caps:
        """The full caps halved as often as ``names`` series need to fit, never below the floor
        (``names`` at most ``max_names``: those always fit at the floor)."""
        shift = 0
        while True:
            caps = Caps(max(self.floor.recent, self.full.recent >> shift),
                        max(self.floor.history, self.full.history >> shift))
            if names * caps.points <= self.total or caps == self.floor:
                return caps
            shift += 1


class UnheldNames:
    """Names the budget refused, counted once each. Up to ``UNHELD_TRACKED`` are told apart by
    their hash; past that the count is a lower bound (``exact`` false)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self.exact = True

    def add(self, name: str) -> None:
        if len(self._seen) < UNHELD_TRACKED:
            self._seen.add(hash(name))
        elif hash(name) not in self._seen:
            self.exact = False

    def __contains__(self, name: str) -> bool:
        return hash(name) in self._seen

    def __len__(self) -> int:
        return len(self._seen)
