"""Time budgets: durations as people write them, and as the toolkit prints them.

`parse_duration` reads what `--time-budget` takes: `45m`, `2h`, `1h30m`, `90s`, plain seconds,
and `1h30`, where a number after hours counts minutes (as on a clock). `format_duration`
prints seconds the same way, so what a command prints it also accepts.
"""

from __future__ import annotations

import re

UNITS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?"
)


def parse_duration(text: str) -> float:
    """'45m', '2h', '1h30m', '1h30' (90 minutes), '90s' or plain seconds -> seconds.

    Raises:
        ValueError: not a duration, or not a positive one.
    """
    clean = text.strip().lower()
    # A bare number after hours is minutes: "1h30" is what "1h30m" says.
    if re.fullmatch(r"\d+(?:\.\d+)?h\d+(?:\.\d+)?", clean):
        clean += "m"
    parts = _DURATION.fullmatch(clean)
    if not clean or parts is None:
        raise ValueError(f"{text!r} is not a duration like 45m, 2h or 1h30m")
    seconds = sum(float(v) * UNITS[k] for k, v in parts.groupdict().items() if v)
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as '0.4s', '42s', '3m07s' or '1h30m'."""
    if seconds < 1:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
