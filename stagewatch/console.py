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
    """A table cell shown verbatim (a Text is never parsed as markup); None is shown as '-'."""
    return Text("-" if value is None else str(value), style=style)


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
    """A number as text (thousands separators for integers); never raises, whatever the value."""
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
            if digits is not None:
                return f"{value:.{digits}f}"
            return f"{value:.1f}" if abs(value) < 1e15 else repr(value)
    except (ValueError, OverflowError):  # pragma: no cover - defensive: formatting a number must not fail
        pass
    return str(value)


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
