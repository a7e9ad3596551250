"""Every division in the SQL the project builds has a divisor that cannot be 0 (static scan, second line).

ClickHouse 18.16 evaluates both branches of if() and raises "Division by zero" on intDiv/modulo even
when the divisor is NULL (`nullIf(d, 0)` is no guard there: the function runs on the nested 0 before the
NULL mask is applied), and a float `/` by 0 gives inf or nan instead of a number. So the only divisors
accepted here are positive constants, `greatest(x, <positive constant>)` (schemas.queries.safe_divisor)
and products of those; intDivOrZero/moduloOrZero are safe by definition. The first line of defence is
the run of every query on stages with zero divisors, on 18.16 and chDB (tests/dashboards/test_zero_divisors.py);
this scan makes a new unguarded division fail CI even where no scenario exercises it.

Scanned: status/files/jobs/attempts/events SQL (schemas/queries.py), every panel and variable query of
every dashboard (raw and with the plugin's macros expanded), every alert rule query, and the SQL the
report builds (tests/dashboards/test_zero_divisors.py records it from a run).
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest

from dashboards import alerts, build
from dashboards.macros import ALL, TimeRange, Variable, expand
from processors.numbers import FILE_BUCKETS
from schemas import queries as sq

_NUMBER = re.compile(r"^\d+(\.\d*)?([eE][+-]?\d+)?$|^\.\d+$")
_IDENT_CALL = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\s*$")


def _strip_literals(sql: str) -> str:
    """`sql` with every quoted string (ClickHouse escapes: \\x and doubled quotes) and comment blanked out."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            out.append(ch + " " * max(0, min(j, n - 1) - i - 1) + ch)
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _matching(s: str, open_at: int) -> int:
    """Index of the bracket closing the one at `open_at`."""
    depth = 0
    for k in range(open_at, len(s)):
        if s[k] == "(":
            depth += 1
        elif s[k] == ")":
            depth -= 1
            if depth == 0:
                return k
    raise ValueError(f"unbalanced brackets in {s[open_at:open_at + 80]!r}")


def _split_top(s: str, sep: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _unwrap(expr: str) -> str:
    e = expr.strip()
    while e.startswith("(") and _matching(e, 0) == len(e) - 1:
        e = e[1:-1].strip()
    return e


def safe_divisor(expr: str) -> bool:
    """A divisor that is never 0 nor NULL: a positive constant, greatest(..., positive constant), or a product."""
    e = _unwrap(expr)
    if _NUMBER.match(e):
        return float(e) > 0
    factors = _split_top(e, "*")
    if len(factors) > 1:
        return all(safe_divisor(f) for f in factors)
    m = re.match(r"^(greatest)\s*\(", e, re.I)
    if m and _matching(e, m.end() - 1) == len(e) - 1:
        args = _split_top(e[m.end():-1], ",")
        return any(_NUMBER.match(_unwrap(a)) and float(_unwrap(a)) > 0 for a in args)
    m = re.match(r"^to(U?Int\d+|Float\d+)\s*\(", e)
    if m and _matching(e, m.end() - 1) == len(e) - 1:
        return safe_divisor(e[m.end():-1])
    return False


def _operand_after(s: str, pos: int) -> str:
    """The primary expression starting at `pos` (after a binary / or %): a number, a name, a call, a group."""
    k = pos
    while k < len(s) and s[k].isspace():
        k += 1
    if k < len(s) and s[k] == "(":
        return s[k:_matching(s, k) + 1]
    m = re.match(r"[A-Za-z_0-9.$]+", s[k:])
    if not m:
        return s[k:k + 20]
    end = k + m.end()
    j = end
    while j < len(s) and s[j].isspace():
        j += 1
    if j < len(s) and s[j] == "(":
        return s[k:_matching(s, j) + 1]
    return s[k:end]


def unguarded_divisions(sql: str) -> list[str]:
    """Each division in `sql` whose divisor may be 0 (or NULL), as a short description."""
    s = _strip_literals(sql)
    found = []
    for m in re.finditer(r"\b(intDiv|modulo|divide|intDivOrZero|moduloOrZero)\s*\(", s, re.I):
        if m.group(1).lower().endswith("orzero"):
            continue
        args = _split_top(s[m.end():_matching(s, m.end() - 1)], ",")
        if len(args) != 2 or not safe_divisor(args[1]):
            found.append(f"{m.group(1)}(..., {' '.join(args[-1].split())})")
    for m in re.finditer(r"[/%]", s):
        divisor = _operand_after(s, m.end())
        if not safe_divisor(divisor):
            found.append(f"{m.group(0)} {' '.join(divisor.split())}")
    return found


# --------------------------------------------------------------------------------------------------
# the scanner itself can fail


@pytest.mark.parametrize("sql", [
    "SELECT intDiv(2000 * a + b, 2 * b) FROM t",
    "SELECT if(b = 0, 0., intDiv(a, b)) FROM t",
    "SELECT intDiv(a, nullIf(b, 0)) FROM t",      # raises on 18.16 all the same
    "SELECT a / b FROM t",
    "SELECT a / (b - 1) FROM t",
    "SELECT a % b, 1 FROM t",
    "SELECT modulo(a, sum(b)) FROM t",
    "SELECT count() * 60 / $__interval_s FROM t",
    "SELECT a / greatest(b, 0) FROM t",
    "SELECT a / 0 FROM t",
])
def test_scanner_flags_unguarded_divisions(sql: str) -> None:
    assert unguarded_divisions(sql), sql


@pytest.mark.parametrize("sql", [
    "SELECT intDiv(2000 * a + b, 2 * greatest(b, 1)) / 10 FROM t",
    "SELECT a / greatest(b, 1), intDiv(toUInt32(t), 3600) * 3600 FROM t",
    "SELECT a / (2 * greatest(sum(b), 1)), c % 7, intDivOrZero(a, b) FROM t",
    "SELECT concat('100%', '/', 'x / y') AS s, 'it''s / 0' AS t FROM t",  # inside literals: not divisions
    "SELECT a / 60 FROM t -- a comment / b",
])
def test_scanner_accepts_guarded_divisions(sql: str) -> None:
    assert unguarded_divisions(sql) == []


# --------------------------------------------------------------------------------------------------
# every SQL the project builds


def _cli_sql() -> Iterator[tuple[str, str]]:
    yield "status_sql", sq.status_sql(as_of=1.5e9)
    yield "status_sql campaign/stage", sq.status_sql("c", "s", as_of=1.5e9, threshold_s=60)
    yield "missing_files_sql", sq.missing_files_sql("c", "s")
    yield "files_sql", sq.files_sql("c", "s", FILE_BUCKETS)
    for state, flt in sq.JOB_STATE_FILTERS.items():
        yield f"JOBS_SQL {state}", sq.JOBS_SQL.format(where=sq.where("c", "s"), job_filter=flt, order="job_id", limit=5)
    yield "ATTEMPTS_SQL", sq.ATTEMPTS_SQL.format(where=sq.where("c", "s"), job_id=sq.literal("j"))
    yield "JOB_EVENTS_SQL", sq.JOB_EVENTS_SQL.format(where=sq.where("c", "s"), job_id=sq.literal("j"))


def _dashboard_sql() -> Iterator[tuple[str, str]]:
    tr = TimeRange(1.5e9, 1.5e9 + 86400, interval_s=0.2)  # an interval under a second: the plugin's minimum is 1
    variables = [Variable("campaign", ALL, options=["a", "b/c"]), Variable("stage", "s%t"), Variable("job_id", "j")]
    for uid, dash in build.all_dashboards().items():
        data = build.to_json(dash)
        for panel, target in build.iter_panel_queries(data):
            yield f"{uid} {panel['title']} {target['refId']}", target["rawSql"]
            yield f"{uid} {panel['title']} {target['refId']} (expanded)", expand(target["rawSql"], tr, variables)
        for name, sql in build.iter_variable_queries(data):
            yield f"{uid} variable {name}", sql


def _alert_sql() -> Iterator[tuple[str, str]]:
    for options in (alerts.AlertOptions(), alerts.AlertOptions(cpu_min_jobs=1, eviction_fraction=2.5)):
        for spec in alerts.rule_specs(options):
            yield f"alert {spec.uid}", spec.sql
            yield f"alert {spec.uid} (expanded)", expand(spec.sql, TimeRange(1.5e9 - spec.window_s, 1.5e9))


def all_static_sql() -> Iterator[tuple[str, str]]:
    yield from _cli_sql()
    yield from _dashboard_sql()
    yield from _alert_sql()


def test_every_query_of_status_panels_and_alerts_guards_its_divisions() -> None:
    scanned, bad = 0, []
    for name, sql in all_static_sql():
        scanned += 1
        bad += [f"{name}: {d}" for d in unguarded_divisions(sql)]
    assert scanned > 60
    assert bad == [], "unguarded divisions (use schemas.queries.safe_divisor):\n" + "\n".join(bad)


def test_status_sql_divides_at_all() -> None:
    """The scan is not vacuous: STATUS_SQL has its ratios, and each is guarded."""
    s = _strip_literals(sq.STATUS_SQL)
    assert s.count("intDiv(") == 3 and s.count("greatest(") == 2
