"""stagewatch.views.tables: the drill-down tables fit the terminal as the overview does: no value cut or
folded (each shown column as wide as its widest cell), free text wraps, columns left out are named; and the
sites and holds tables built on it, at 200, 120, 80 and 60 columns."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from rich.console import Console

from stagewatch.cli_holds import holds_table
from stagewatch.cli_sites import sites_table
from stagewatch.views.tables import Field, fitted_table

T0 = 1497960000.0


def rendered(table, width: int) -> str:
    c = Console(width=width, record=True, force_terminal=False, color_system=None)
    c.print(table)
    return c.export_text()


def hidden(text: str) -> list[str]:
    m = re.search(r"Not shown at this width: (.*?) \(--format json", " ".join(text.split()))
    return m.group(1).split(", ") if m else []


def rows_of(text: str) -> list[list[str]]:
    """The table's body lines split into cells (the heavy-head box: │ between cells)."""
    return [[c.strip() for c in ln.split("│")[1:-1]] for ln in text.splitlines() if ln.startswith("│")]


words = hs.text(alphabet="abcdefghij-_.#0123456789", min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.tuples(words, hs.integers(0, 10**9), hs.lists(words, max_size=8)), min_size=1, max_size=5),
       hs.integers(40, 220))
def test_shown_values_are_whole_free_text_wraps_hidden_are_named(rows, width):
    data = [{"id": a, "n": n, "why": " ".join(w)} for a, n, w in rows]
    fields = [Field("id", lambda r: r["id"]), Field("count", lambda r: f"{r['n']:,}", "right"),
              Field("why", lambda r: r["why"], free=True), Field("extra", lambda r: r["id"][::-1])]
    text = rendered(fitted_table(data, fields, "t", width), width)
    assert "…" not in text
    gone = hidden(text)
    assert "id" not in gone  # the first column is always shown
    body = rows_of(text)
    widest_id = max(len(r["id"]) for r in data)
    if widest_id + 4 <= width:  # the first column fits: every line does
        assert max(len(ln) for ln in text.splitlines()) <= width
        ids = [cells[0] for cells in body if cells and cells[0]]
        assert ids == [r["id"] for r in data]  # whole, one line each
        if "count" not in gone:
            assert [c[1] for c in body if c and c[0]] == [f"{r['n']:,}" for r in data]
        if "why" not in gone:
            col = [f.header for f in fields if f.header not in gone].index("why")
            # every character of the free text, in order (a word longer than the column folds)
            assert "".join("".join(c[col] for c in body).split()) == "".join(
                "".join(r["why"] or "-" for r in data).split())  # a missing value prints as "-"


SITES = [{"campaign": "nova_prod5_mc", "stage": "fd_mcgen_cry_fhc_all", "site": f"OSG-Site{i}", "attempts": 21_405 * i,
          "restarts": 935 + i, "restarts_by_cause": {"evicted": 296, "shadow_exception": 177, "unknown": 12},
          "badput_core_hours": 1243.2 * i, "cpu_efficiency_pct": 87.9, "jobs_held": 3} for i in range(1, 4)]
HOLDS = [{"campaign": "nova_prod5_data", "stage": "fd_data_period1", "jobs_held": 12, "hold_code": 34,
          "hold_subcode": 0, "hold_reason": "Job has gone over memory limit of 2000 megabytes. Peak usage: 2481.",
          "held_since_ts": T0 - 3600}]


@pytest.mark.parametrize("width", [200, 120, 80, 60])
@pytest.mark.parametrize("one_stage", [True, False])
def test_sites_never_cut_a_number(width, one_stage):
    text = rendered(sites_table(SITES, title="Sites", one_stage=one_stage, width=width), width)
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= width
    gone = hidden(text)
    for r in SITES:
        line = next(ln for ln in text.splitlines() if r["site"] in ln)
        if "Badput core-h" not in gone:
            assert f"{r['badput_core_hours']:,.2f}" in line
        if "Attempts" not in gone:
            assert f"{r['attempts']:,}" in line
    assert "Sorted by badput" in " ".join(text.split())
    assert not gone or width < 200


@pytest.mark.parametrize("width", [200, 120, 80, 60])
def test_holds_never_cut_a_number(width):
    text = rendered(holds_table(HOLDS, title="Holds", clock=T0, width=width), width)
    assert "…" not in text and max(len(ln) for ln in text.splitlines()) <= width
    line = next(ln for ln in text.splitlines() if "fd_data_period1" in ln)
    assert "│   12 │" in line  # the held count whole
    assert ("1 h ago" in text) == ("Held since (UTC)" not in hidden(text))
    assert "HoldReasonCode" in " ".join(text.split())
