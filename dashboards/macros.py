"""Expand a panel's SQL the way Grafana and the ClickHouse plugin would, so tests can run it.

No Grafana runs in the test suite, yet every panel and alert rule must be proven to run on ClickHouse
18.16 and on chDB. This module mirrors, step by step, what happens to a query's `rawSql` between the
dashboard JSON and the database (grafana-clickhouse-datasource 4.x):

1. Frontend, `Datasource.applyConditionalAll`: every `$__conditionalAll(condition, $var)` becomes
   `condition`, or `1=1` when the variable's current value is `$__all` or empty. Occurrences are
   handled from the last to the first, with the same bracket-counting argument split as the plugin.
2. Frontend, Grafana's template service: `$var`, `${var}`, `${var:format}` and `[[var]]` are replaced
   by the variable's value. Without a format, a multi-value is rendered by the plugin's own formatter
   (`'a','b'`) and a single value as it is; `singlequote`, `sqlstring`, `csv`, `raw`, `doublequote` and
   `percentencode` are Grafana's formats. None of the quoting formats escapes a backslash, so the
   dashboards use only `percentencode` inside `decodeURLComponent('...')` (dashboards/build.py). Unknown names (and the plugin's `$__` macros) are left alone, as Grafana does.
3. Backend (sqlds `getMacroMatches` + the plugin's `pkg/macros`): `$__name` followed by a bracketed
   argument list (nested brackets allowed, arguments split on top-level commas and trimmed).

Alert rules are evaluated by Grafana's backend alone: there is no frontend step, so their SQL may use
only the backend macros (step 3); `expand(..., variables=None)` refuses variables in that case.

Not every macro is usable here: `$__timeInterval` expands to `toStartOfInterval`, which ClickHouse
18.16 lacks, so panels bucket time with `$__interval_s` instead (tests enforce this).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

ALL = "$__all"
"""The value Grafana stores for a variable whose "All" option is selected."""


class MacroError(ValueError):
    """A macro or variable could not be expanded (wrong argument count, unknown macro, ...)."""


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's current selection.

    `value` is a string, a list of strings (multi-value), or ALL. `options` are the values the variable
    offers; Grafana expands ALL into them (our variables have no custom all-value).
    """

    name: str
    value: str | Sequence[str]
    options: Sequence[str] = field(default_factory=tuple)

    def values(self) -> list[str]:
        v = self.value
        if v == ALL or (isinstance(v, (list, tuple)) and list(v) == [ALL]):
            return list(self.options)
        if isinstance(v, str):
            return [v]
        return list(v)

    def current_string(self) -> str:
        """`current.value.toString()` in JavaScript: arrays join with ','."""
        v = self.value
        return v if isinstance(v, str) else ",".join(v)


@dataclass(frozen=True)
class TimeRange:
    """The query's time range (Unix seconds) and interval (seconds), as Grafana sends them."""

    start: float
    end: float
    interval_s: float = 60.0


# ------------------------------------------------------------------------------------------------
# 1. $__conditionalAll (frontend)


def _macro_args(sql: str, args_index: int) -> list[str]:
    """The plugin's `getMacroArgs`: arguments of the bracket at `args_index`, split on depth-1 commas.

    Arguments are returned untrimmed (the plugin rebuilds the original text from them).
    """
    args: list[str] = []
    depth = 0
    last = 1
    sub = sql[args_index:]
    for m in re.finditer(r"\(|\)|,", sub):
        tok = m.group(0)
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        if tok == "," and depth == 1:
            args.append(sub[last:m.end() - 1])
            last = m.end()
        if depth == 0:
            args.append(sub[last:m.end() - 1])
            return args
    return []


_VAR_IN_ARG = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")


def apply_conditional_all(sql: str, variables: dict[str, Variable]) -> str:
    macro = "$__conditionalAll("
    idx = sql.rfind(macro)
    while idx != -1:
        params = _macro_args(sql, idx + len(macro) - 1)
        if len(params) != 2:
            return sql
        phrase = params[0]
        m = _VAR_IN_ARG.search(params[1].strip())
        if m:
            var = variables.get(m.group(0))
            value = var.current_string() if var is not None else None
            if value == "" or value == ALL:
                phrase = "1=1"
        sql = sql.replace(f"{macro}{params[0]},{params[1]})", phrase, 1)
        idx = sql.rfind(macro)
    return sql


# ------------------------------------------------------------------------------------------------
# 2. Grafana template variables (frontend)

_TEMPLATE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _fmt_singlequote(values: list[str]) -> str:
    return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)


def _fmt_sqlstring(values: list[str]) -> str:
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def _fmt_doublequote(values: list[str]) -> str:
    return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)


def _fmt_plugin_default(values: list[str], multi: bool) -> str:
    """The ClickHouse plugin's `format`: arrays become 'a','b' (no escaping), scalars stay raw."""
    if multi:
        return "'" + "','".join(values) + "'"
    return values[0] if values else ""


def encode_uri_component_strict(value: str) -> str:
    """Grafana's `encodeURIComponentStrict`: encodeURIComponent (UTF-8) that also encodes ! ' ( ) *.

    What is left unencoded is exactly RFC 3986's unreserved set, A-Z a-z 0-9 - _ . ~
    """
    return urllib.parse.quote(value, safe="")


def _fmt_percentencode(values: list[str], multi: bool) -> str:
    """Grafana's `percentencode`: an array is joined as a glob `{a,b}` first, then encoded as one string."""
    return encode_uri_component_strict("{" + ",".join(values) + "}" if multi else (values[0] if values else ""))


_FORMATS: dict[str, Callable[[list[str]], str]] = {
    "singlequote": _fmt_singlequote,
    "sqlstring": _fmt_sqlstring,
    "doublequote": _fmt_doublequote,
    "csv": lambda vs: ",".join(vs),
    "raw": lambda vs: ",".join(vs),
}


def replace_variables(sql: str, variables: dict[str, Variable]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        var = variables.get(name)
        if var is None:
            return m.group(0)
        values = var.values()
        multi = not isinstance(var.value, str) or var.value == ALL
        if fmt is None:
            return _fmt_plugin_default(values, multi)
        if fmt == "percentencode":
            return _fmt_percentencode(values, multi)
        if fmt not in _FORMATS:
            raise MacroError(f"variable format {fmt!r} of ${{{name}:{fmt}}} is not mirrored here")
        return _FORMATS[fmt](values)

    return _TEMPLATE.sub(sub, sql)


# ------------------------------------------------------------------------------------------------
# 3. Backend macros (sqlds + grafana-clickhouse-datasource pkg/macros)


def _to_datetime(t: float) -> str:
    return f"toDateTime({int(t // 1)})"


def _to_datetime64(t: float) -> str:
    return f"fromUnixTimestamp64Milli({int(t * 1000 // 1)})"


def _to_date(t: float) -> str:
    return "toDate('" + datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d") + "')"


def _one(name: str, args: list[str]) -> str:
    if len(args) != 1:
        raise MacroError(f"$__{name}: expected 1 argument, received {len(args)}")
    return args[0]


def _interval_s(tr: TimeRange) -> int:
    return int(max(tr.interval_s, 1))


BackendMacro = Callable[[TimeRange, list[str]], str]

BACKEND_MACROS: dict[str, BackendMacro] = {
    "fromTime": lambda tr, a: _to_datetime(tr.start),
    "toTime": lambda tr, a: _to_datetime(tr.end),
    "fromTime_ms": lambda tr, a: _to_datetime64(tr.start),
    "toTime_ms": lambda tr, a: _to_datetime64(tr.end),
    "timeFilter": lambda tr, a: (lambda c: f"{c} >= {_to_datetime(tr.start)} AND {c} <= {_to_datetime(tr.end)}")(
        _one("timeFilter", a)),
    "timeFilter_ms": lambda tr, a: (
        lambda c: f"{c} >= {_to_datetime64(tr.start)} AND {c} <= {_to_datetime64(tr.end)}")(_one("timeFilter_ms", a)),
    "dateFilter": lambda tr, a: (lambda c: f"{c} >= {_to_date(tr.start)} AND {c} <= {_to_date(tr.end)}")(
        _one("dateFilter", a)),
    "timeInterval": lambda tr, a: (
        f"toStartOfInterval(toDateTime({_one('timeInterval', a)}), INTERVAL {_interval_s(tr)} second)"),
    "timeInterval_ms": lambda tr, a: (
        f"toStartOfInterval(toDateTime64({_one('timeInterval_ms', a)}, 3), "
        f"INTERVAL {int(max(tr.interval_s * 1000, 1))} millisecond)"),
    "interval_s": lambda tr, a: str(_interval_s(tr)),
}


def _date_time_filter(tr: TimeRange, args: list[str]) -> str:
    if len(args) != 2:
        raise MacroError(f"$__dateTimeFilter: expected 2 arguments, received {len(args)}")
    d, t = args
    return (f"({d} >= {_to_date(tr.start)} AND {d} <= {_to_date(tr.end)}) AND "
            f"({t} >= {_to_datetime(tr.start)} AND {t} <= {_to_datetime(tr.end)})")


BACKEND_MACROS["dateTimeFilter"] = _date_time_filter
BACKEND_MACROS["dt"] = _date_time_filter


def _parse_args(rest: str) -> tuple[list[str] | None, int]:
    """sqlds `parseArgs`: a bracketed list at the start of `rest` -> (trimmed args, consumed length)."""
    if not rest.startswith("("):
        return None, 0
    args: list[str] = []
    depth = 0
    cur: list[str] = []
    for i, ch in enumerate(rest):
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    raise MacroError("failed to parse macro arguments (missing close bracket?)")


_ANY_MACRO = re.compile(r"\$__(\w+)")


def apply_backend_macros(sql: str, tr: TimeRange) -> str:
    """Replace every backend macro; an unknown `$__name` is an error (Grafana would send it to ClickHouse)."""
    out: list[str] = []
    pos = 0
    for m in _ANY_MACRO.finditer(sql):
        if m.start() < pos:
            continue
        name = m.group(1)
        fn = BACKEND_MACROS.get(name)
        if fn is None:
            raise MacroError(f"unknown macro $__{name} (not a grafana-clickhouse-datasource macro)")
        args, length = _parse_args(sql[m.end():])
        out.append(sql[pos:m.start()])
        out.append(fn(tr, [] if args is None else args))
        pos = m.end() + length
    out.append(sql[pos:])
    return "".join(out)


# ------------------------------------------------------------------------------------------------


def expand(sql: str, time_range: TimeRange, variables: Sequence[Variable] | None = None) -> str:
    """The SQL ClickHouse receives for a panel (with variables) or an alert rule (variables=None)."""
    if variables is None:
        if "$__conditionalAll" in sql or _TEMPLATE.search(re.sub(r"\$__\w+", "", sql)):
            raise MacroError("alert-rule SQL is expanded by Grafana's backend only: no dashboard variables "
                             "or $__conditionalAll allowed")
        return apply_backend_macros(sql, time_range)
    byname = {v.name: v for v in variables}
    sql = apply_conditional_all(sql, byname)
    sql = replace_variables(sql, byname)
    return apply_backend_macros(sql, time_range)


__all__ = ["ALL", "MacroError", "Variable", "TimeRange", "expand", "apply_conditional_all", "encode_uri_component_strict",
           "replace_variables", "apply_backend_macros", "BACKEND_MACROS"]
