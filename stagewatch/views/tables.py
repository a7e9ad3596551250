"""The read commands' tables (jobs, held jobs, files, job, sites, holds, history) laid out for a terminal the way the overview is.

Why: rich sizes each column by its longest line and then shrinks the widest ones in proportion, so at 120
columns a 32-character job id was folded into four pieces while a sentence beside it kept its room. Here
each column is as wide as its widest cell (or its header's longest word: headers wrap between words), the
free-text columns (a hold reason, output names) take what is left and wrap, and when the columns do not all
fit, the last in the table's priority are left out and named under it. A value shown is never cut or
folded unless a single column is wider than the terminal; every field is in `--format json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from stagewatch.console import cell

FREE_MIN = 16
"""The fewest columns a free-text column is given (it wraps within them)."""

BORDER = 3
"""Columns rich's default box adds per column (a rule and a space of padding each side); plus one."""

LIGHT_GAP = 2
"""Columns between two columns of a light table (the overview's look: a rule under the headers only)."""


@dataclass(frozen=True)
class Field:
    """One column: its header, how a row gives its text (None or "" prints as '-'; a rich Text is shown as
    it is, style included), and its layout."""
    header: str
    value: Callable[[dict[str, Any]], Any]
    justify: str = "left"
    free: bool = False  # free text: wraps to take the width the other columns leave


HEADER_WHOLE = 14
"""A header up to this long stays on one line ("held for"); a longer one wraps between its words."""


def natural(field: Field, cells: list[Text], header_whole: int = HEADER_WHOLE) -> int:
    """A column's width: its widest cell, or its header (its longest word when longer than `header_whole`);
    a free-text column at most FREE_MIN."""
    header = cell_len(field.header)
    head = header if header <= header_whole else max(cell_len(w) for w in field.header.split())
    widest = max([head] + [cell_len(c.plain) for c in cells] + [1])
    return min(widest, FREE_MIN) if field.free else widest


def fitted_table(rows: list[dict[str, Any]], fields: Sequence[Field], title: str, width: int,
                 priority: Sequence[str] | None = None, note: str | None = None, *, light: bool = False,
                 header_whole: int = HEADER_WHOLE) -> Table:
    """`rows` as a table of `fields` (in their order) that fits `width` terminal columns.

    Columns are taken in `priority` order (header names; default: table order) while they fit at their
    natural width, strictly: a later, narrower column never replaces an earlier one. The first is always
    shown. Those left out are named in the caption, after `note`. `light`: the overview's box (a rule
    under the headers, no edges), for a dense grid of numbers; `header_whole`: see `natural`.
    """
    cells = {f.header: [v if isinstance(v := f.value(r), Text) else cell(v) for r in rows] for f in fields}
    by_header = {f.header: f for f in fields}
    need = {f.header: natural(f, cells[f.header], header_whole) for f in fields}
    edge, gap = (-LIGHT_GAP, LIGHT_GAP) if light else (1, BORDER)
    shown: set[str] = set()
    used = edge
    for header in priority or [f.header for f in fields]:
        extra = need[header] + gap
        if shown and used + extra > width:
            break
        shown.add(header)
        used += extra
    hidden = [f.header for f in fields if f.header not in shown]
    lines = [note] if note else []
    if hidden:
        lines.append(f"Not shown at this width: {', '.join(hidden)} (--format json has every field).")
    caption = Text("\n".join(lines), style="dim") if lines else None
    t = (Table(title=Text(title), caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
               padding=(0, 1), collapse_padding=True) if light else Table(title=Text(title), caption=caption))
    spare = max(0, width - used)
    free = [f.header for f in fields if f.header in shown and by_header[f.header].free]
    for f in fields:
        if f.header not in shown:
            continue
        if f.free:  # the free-text columns share what is left, each at least FREE_MIN
            t.add_column(f.header, justify=f.justify, overflow="fold", min_width=need[f.header],
                         max_width=need[f.header] + spare // len(free))
        else:
            t.add_column(f.header, justify=f.justify, overflow="fold", width=need[f.header])
    keep = [f.header for f in fields if f.header in shown]
    for i in range(len(rows)):
        t.add_row(*(cells[h][i] for h in keep))
    return t


__all__ = ["Field", "fitted_table", "natural", "FREE_MIN"]
