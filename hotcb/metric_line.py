"""The metrics file's line: a ``MetricRecord`` as JSON, the same bytes ``json`` writes, built faster.

``MetricLineEncoder.encode`` writes the record ``MetricsCollector.record`` builds (``{"step",
"epoch","wall_time","metrics"}``, an int step, an int or no epoch, float or tag values) by
formatting its parts: ``float.__repr__`` and the escaped key are what the C encoder writes for
them. Most of a line's cost is the floats' shortest repr, and most of a line's values are the
previous line's (the knob echoes: lr after its warmup, momentum, a loss weight), so each metric's
last value is kept with its text and reused when the value is the same (equal non-zero floats
have the same bits; a zero is formatted each time: 0.0 and -0.0 are equal and print apart). The
writer thread serializes every line holding the interpreter's lock, so the training thread
waits for this. Anything else (a non-finite float, another type, more names than the cache
keeps) goes through ``json`` itself: the same line, or the same error.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

# ``json.dumps`` with these options: the encoder whose bytes a metric line is.
LINE_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
MAX_NAMES_CACHED = 4096  # metric names whose key and last value's text are kept

_FIELDS = ["step", "epoch", "wall_time", "metrics"]
_float = float.__repr__  # what the C encoder writes for a finite float


class MetricLineEncoder:
    """One collector's lines (its cache is read and replaced whole, one dict item per name)."""

    def __init__(self) -> None:
        self._names: dict[str, tuple[str, float, str]] = {}  # name -> (its JSON key and colon, last float, its text)

    def encode(self, rec: Any) -> str:
        """``rec`` as ``LINE_ENCODER.encode(rec)`` writes it (raises what it raises)."""
        if type(rec) is not dict or len(rec) != 4:
            return LINE_ENCODER.encode(rec)
        step, epoch, wall, metrics = rec.get("step"), rec.get("epoch"), rec.get("wall_time"), rec.get("metrics")
        if (type(step) is not int or (epoch is not None and type(epoch) is not int) or type(wall) is not float
                or wall - wall != 0.0 or type(metrics) is not dict or list(rec) != _FIELDS):
            return LINE_ENCODER.encode(rec)
        names = self._names
        parts = []
        for name, v in metrics.items():
            known = names.get(name)
            if type(v) is float and v - v == 0.0:  # finite (inf - inf and nan are nan)
                if known is not None and v == known[1] and v != 0.0:
                    parts.append(known[0] + known[2])
                    continue
                text = _float(v)
            elif type(v) is str:
                text = _quote(v)
            else:
                return LINE_ENCODER.encode(rec)
            if known is None:
                if type(name) is not str or len(names) >= MAX_NAMES_CACHED:
                    return LINE_ENCODER.encode(rec)
                known = names[name] = (_quote(name) + ":", 0.0, "")  # 0.0 is never reused
            if type(v) is float:
                names[name] = (known[0], v, text)
            parts.append(known[0] + text)
        return (f'{{"step":{step},"epoch":{"null" if epoch is None else epoch},'
                f'"wall_time":{_float(wall)},"metrics":{{{",".join(parts)}}}}}')
