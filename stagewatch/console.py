"""Printing values that come from data: escaped for rich markup, and formatted by total functions.

Campaign, stage, job and file names and dead-letter reasons are written by whoever produced the
events; rich reads `[...]` as markup, so `nova[/prod]` would crash a print (MarkupError) and `s[red]x`
would silently show as `sx`. Everything printed here is either escaped (`esc`) or a `Text` cell
(`cell`), which rich never parses. The formatters never raise: a store may already hold values that
today's contract refuses (a timestamp past year 9999), and one bad row must not hide the others.
"""

from __future__ import annotations

import difflib
import math
from datetime import datetime, timezone
from typing import Any, Iterable

from rich.markup import escape
from rich.text import Text


def esc(value: Any) -> str:
    """`value` as text safe to interpolate into rich markup (shown verbatim)."""
    return escape(str(value))


def cell(value: Any, style: str = "") -> Text:
    """A table cell shown verbatim (a Text is never parsed as markup); a missing value (None, or the empty
    string a ClickHouse column holds for "none") is shown as '-'."""
    return Text("-" if value is None or value == "" else str(value), style=style)


RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
"""`fmt_ts`'s format for a time a user pastes back into `--at` / `--now` (UTC, to the second)."""


def fmt_ts(ts: float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A Unix time as UTC text; a time that no calendar date represents is shown as its number."""
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime(fmt)
    except (OverflowError, OSError, ValueError, TypeError):
        try:  # the Unix seconds themselves, without separators, the same whether stored as int or float
            return f"{float(ts):.0f}"
        except (TypeError, ValueError, OverflowError):
            return str(ts)


def fmt_number(value: Any, digits: int | None = None) -> str:
    """A number as text with thousands separators ("1,243.20"); never raises, whatever the value."""
    if value is None:
        return "-"
    try:
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            if not math.isfinite(value):
                return str(value)
            if abs(value) >= 1e15:
                return repr(value)
            return f"{value:,.{1 if digits is None else digits}f}"
    except (ValueError, OverflowError):  # pragma: no cover - defensive: formatting a number must not fail
        pass
    return str(value)


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def fmt_duration(seconds: Any, parts: int = 2) -> str:
    """A duration as people say it ("2 h 13 min", "3 d 4 h", "45 s"): the `parts` largest units.

    Truncated, not rounded (2 h 59 min 59 s is "2 h 59 min", never "3 h"), so a duration shown is never
    more than it was. None (no value) is '-'; a value that is not a finite number is shown as it is.
    """
    if seconds is None:
        return "-"
    try:
        total = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if not math.isfinite(total):
        return str(seconds)
    sign = "-" if total < 0 else ""
    left = int(abs(total))
    if left < 1:
        return "0 s"
    first = next(i for i, (_, size) in enumerate(_UNITS) if left >= size)
    shown: list[str] = []
    for unit, size in _UNITS[first:first + parts]:
        value, left = divmod(left, size)
        if value:
            shown.append(f"{value:,} {unit}")
    return sign + " ".join(shown)


def fmt_ago(ts: Any, now: float, parts: int = 1) -> str:
    """How long before `now` a time was ("3 h ago"); '-' when there is no time."""
    if ts is None:
        return "-"
    try:
        delta = float(now) - float(ts)
    except (TypeError, ValueError, OverflowError):
        return str(ts)
    if not math.isfinite(delta):
        return fmt_ts(ts)
    if delta < 0:
        return "in " + fmt_duration(-delta, parts)
    return fmt_duration(delta, parts) + " ago"


def did_you_mean(value: str, known: Iterable[str], what: str, limit: int = 20) -> str:
    """A sentence naming the known values (at most `limit`), closest matches first if any."""
    names = sorted(set(known))
    if not names:
        return f"there is no {what} in this store yet (replay events first: stagewatch replay FILE)."
    close = difflib.get_close_matches(value, names, n=3, cutoff=0.6)
    shown = ", ".join(repr(n) for n in names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit
                                                          else "")
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}Known {what}s: {shown}."


def resolve_choice(value: str, aliases: dict[str, str], option: str, shown: Iterable[str] | None = None) -> str:
    """The canonical name an option value (any case, `-` or `_`) stands for; a typo is a ValueError whose
    message names the closest choices (did you mean ...?) and every canonical one."""
    key = value.strip().lower().replace("-", "_")
    if key in aliases:
        return aliases[key]
    names = list(shown) if shown is not None else sorted(set(aliases.values()))
    close = difflib.get_close_matches(key, list(aliases), n=3, cutoff=0.6)
    close = list(dict.fromkeys(aliases[c] if c not in names else c for c in close))
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return_msg = f"{option} {value!r} is not known; {hint}choose one of {', '.join(names)}."
    raise ValueError(return_msg)
