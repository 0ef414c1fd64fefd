"""Go-style durations as Flagger writes them ("30s", "1m", "1h30m", "500ms").

Callers: ``core.spec`` (validation), ``metrics`` (the range in PromQL keeps the user's text).
"""

from __future__ import annotations

import re

# "min" as Graphite writes it (Flagger's Graphite example has ``interval: 1min``, which its CRD's
# pattern accepts): the text still goes into templates as written.
_PART = re.compile(r"(\d{1,9}(?:\.\d{1,9})?)(ms|min|s|m|h)")
MAX_TEXT = 32  # characters: "1h30m", never a 400-digit number
_UNITS = {"ms": 0.001, "min": 60.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse(text: str) -> float:
    """Seconds in ``text``; raises ValueError naming the accepted form."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if len(s) > MAX_TEXT:
        raise ValueError(f"duration {text[:MAX_TEXT]!r}... is longer than {MAX_TEXT} characters")
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"invalid duration {text!r}: use a number with ms, s, m or h, e.g. 30s, 1m, 1h30m")
    return total


def prometheus_range(seconds: float) -> str:
    """A PromQL range selector text for ``seconds`` (whole milliseconds)."""
    ms = round(seconds * 1000)
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    if ms % 60_000 == 0:
        return f"{ms // 60_000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"
