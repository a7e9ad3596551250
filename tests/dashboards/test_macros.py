"""dashboards/macros.py against the ClickHouse plugin's documented and tested behaviour.

The expected strings are those of grafana-clickhouse-datasource (pkg/macros, CHDatasource.applyConditionalAll)
and Grafana's variable formats; if the expander drifted from them, the SQL tests would be testing SQL
that Grafana never sends.
"""

from __future__ import annotations

import pytest

from dashboards.macros import ALL, MacroError, TimeRange, Variable, apply_conditional_all, expand

TR = TimeRange(start=1415792726.4, end=1447328726.9, interval_s=30)


def test_time_macros_expand_like_the_plugin() -> None:
    assert expand("WHERE $__timeFilter(t)", TR, []) == (
        "WHERE t >= toDateTime(1415792726) AND t <= toDateTime(1447328726)")
    assert expand("$__fromTime / $__toTime", TR, []) == "toDateTime(1415792726) / toDateTime(1447328726)"
    assert expand("$__fromTime_ms", TR, []) == "fromUnixTimestamp64Milli(1415792726400)"
    assert expand("$__timeInterval(ts)", TR, []) == "toStartOfInterval(toDateTime(ts), INTERVAL 30 second)"
    assert expand("$__interval_s", TR, []) == "30"
    assert expand("$__interval_s", TimeRange(0, 1, 0.2), []) == "1"  # at least one second
    assert expand("$__dateFilter(d)", TR, []) == "d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')"


def test_macro_arguments_may_nest_brackets_and_prefixes_do_not_collide() -> None:
    # $__timeFilter must not eat $__timeFilter_ms (sqlds matches \b after the name).
    sql = "$__timeFilter(toDateTime(toUInt32(ts))) AND $__timeFilter_ms(x)"
    assert expand(sql, TR, []) == ("toDateTime(toUInt32(ts)) >= toDateTime(1415792726) AND toDateTime(toUInt32(ts)) "
                                   "<= toDateTime(1447328726) AND x >= fromUnixTimestamp64Milli(1415792726400) AND "
                                   "x <= fromUnixTimestamp64Milli(1447328726900)")


def test_unknown_macro_and_wrong_argument_count_are_errors() -> None:
    with pytest.raises(MacroError, match="unknown macro"):
        expand("$__timeFiltr(t)", TR, [])
    with pytest.raises(MacroError, match="expected 1 argument"):
        expand("$__timeFilter(a, b)", TR, [])


def test_conditional_all_mirrors_the_plugin() -> None:
    sql = "SELECT 1 WHERE $__conditionalAll(campaign IN (${campaign:singlequote}), $campaign)"
    all_ = Variable("campaign", ALL, options=["a", "b"])
    assert apply_conditional_all(sql, {"campaign": all_}) == "SELECT 1 WHERE 1=1"
    assert apply_conditional_all(sql, {"campaign": Variable("campaign", ["$__all"])}) == "SELECT 1 WHERE 1=1"
    assert apply_conditional_all(sql, {"campaign": Variable("campaign", "")}) == "SELECT 1 WHERE 1=1"
    assert apply_conditional_all(sql, {"campaign": Variable("campaign", ["a"])}) == (
        "SELECT 1 WHERE campaign IN (${campaign:singlequote})")
    two = "$__conditionalAll(a IN ($a), $a) AND $__conditionalAll(b IN ($b), ${b})"
    got = apply_conditional_all(two, {"a": Variable("a", ALL), "b": Variable("b", "x")})
    assert got == "1=1 AND b IN ($b)"


def test_variables_and_formats() -> None:
    v = [Variable("campaign", ["nova", "o'brien"]), Variable("stage", "reco")]
    assert expand("campaign IN (${campaign:singlequote})", TR, v) == "campaign IN ('nova','o\\'brien')"
    assert expand("campaign IN (${campaign:sqlstring})", TR, v) == "campaign IN ('nova','o''brien')"
    assert expand("stage = ${stage:singlequote}", TR, v) == "stage = 'reco'"
    assert expand("stage = '$stage' AND '[[stage]]'", TR, v) == "stage = 'reco' AND 'reco'"
    assert expand("campaign IN ($campaign)", TR, v) == "campaign IN ('nova','o'brien')"  # the plugin's own format
    all_ = [Variable("campaign", ALL, options=["a", "b"])]
    assert expand("$__conditionalAll(c IN (${campaign:singlequote}), $campaign) OR c IN (${campaign:singlequote})",
                  TR, all_) == "1=1 OR c IN ('a','b')"
    assert expand("$unknown stays", TR, v) == "$unknown stays"


def test_alert_sql_may_not_use_dashboard_variables() -> None:
    with pytest.raises(MacroError, match="alert-rule SQL"):
        expand("SELECT 1 WHERE campaign = ${campaign:singlequote}", TR)
    with pytest.raises(MacroError, match="alert-rule SQL"):
        expand("SELECT 1 WHERE $__conditionalAll(a, $a)", TR)
    assert expand("SELECT $__toTime", TR) == "SELECT toDateTime(1447328726)"
