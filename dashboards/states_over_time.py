"""Jobs by state over time, in SQL: how many jobs of a stage were idle, running, held, ... at each step.

The number at step T is the glossary's: a job's state is the state after its latest event with
`ts <= T`, events of one job ordered by (ts, lifecycle rank of the type, event_id), copies of one event
counted once (raw_events FINAL). That is what `stagewatch history` prints at each step (it replays the
events with ts <= T through the Engine), so the Grafana time series and the report's chart equal it at
every step (tests/dashboards/test_states_over_time.py replays them and compares, on both stores).

How, without window functions (ClickHouse 18.16 has none): each job's events, sorted, become a list of
states; every event moves the job from its previous state to its new one, i.e. adds +1 to the new
state and -1 to the previous. Each move is put in the first step at or after its `ts` (moves before
the first step go into it), summed per step, and a cumulative sum over the steps gives the counts.
Only events up to the last step are read; the work is one pass over the stage's job events plus
O(steps) per state, whatever the number of steps (a 7-day dashboard at 1-minute steps is 10,080).

Steps are `start + i * step` for i in 0 .. n-1, all SQL expressions: literals for the report and
tests, the plugin's macros in Grafana (`grafana_jobs_by_state_sql`: multiples of `$__interval_s`
inside the dashboard's time range).
"""

from __future__ import annotations

from typing import Sequence

from processors.jobs import JOB_TYPE_ORDER, STATE_AFTER
from schemas.queries import literal, safe_divisor

OVER_TIME_STATES: tuple[str, ...] = ("idle", "running", "held")
"""The states the dashboards and the report chart (the others are end states or rare)."""


def _array(items: Sequence[str]) -> str:
    return "[" + ", ".join(literal(i) for i in items) + "]"


def _divisor(step: str) -> str:
    return step if step.isdigit() and int(step) > 0 else safe_divisor(step)


JOBS_BY_STATE_SQL = """
SELECT toDateTime(toUInt32({start} + k * {step})) AS time,
{out_columns}
FROM (
    SELECT arraySort(groupArray(k)) AS ks,
{cum_columns}
    FROM (
        SELECT k,
{sum_columns}
        FROM (
            SELECT if(t <= {start}, toUInt64(0), toUInt64(ceil((t - {start}) / {step_div}))) AS k,
{delta_columns}
            FROM (
                SELECT arraySort(x -> (x.1, x.2, x.3),
                                 groupArray((ts, indexOf({order}, type), event_id, type))) AS ev,
                       arrayMap(x -> x.1, ev) AS tss,
                       arrayMap(x -> transform(x.4, {types}, {states}, ''), ev) AS st,
                       arrayPushFront(arrayPopBack(st), '') AS prev
                FROM raw_events FINAL
                WHERE {where} AND kind = 'job' AND ts <= {start} + ({n} - 1) * {step}
                GROUP BY campaign, stage, entity
            ) AS jobs
            ARRAY JOIN tss AS t, st AS s, prev AS p
            UNION ALL
            SELECT toUInt64(arrayJoin(range(toUInt32({n})))) AS k,
{zero_columns}
        ) AS moves
        GROUP BY k
    ) AS per_step
) AS dense
ARRAY JOIN ks AS k, {join_columns}
ORDER BY time
"""
"""Every step gets a row of zero moves (the UNION ALL), so after GROUP BY k the steps are dense and the
cumulative sum of the moves sorted by step is the count at each step. No lambda captures a column (18.16's
analyzer drops a subquery column used only inside a lambda: "Unknown identifier")."""


def jobs_by_state_sql(where: str, start: str, step: str, n: str,
                      states: Sequence[str] = OVER_TIME_STATES) -> str:
    """Columns `time`, `jobs_<state>` for each state: the counts at steps start + i * step, i < n.

    `where` filters campaign/stage; `start`, `step` (> 0) and `n` are SQL expressions in Unix seconds.
    """
    cols = [f"jobs_{s}" for s in states]
    return JOBS_BY_STATE_SQL.format(
        start=f"({start})", step=f"({step})", step_div=_divisor(step), n=f"({n})", where=where,
        order=_array(JOB_TYPE_ORDER), types=_array(list(STATE_AFTER)), states=_array(list(STATE_AFTER.values())),
        delta_columns=",\n".join(f"                   toInt64(s = {literal(st)}) - toInt64(p = {literal(st)}) "
                                 f"AS d_{st}" for st in states),
        sum_columns=",\n".join(f"               sum(d_{st}) AS d_{st}" for st in states),
        zero_columns=",\n".join(f"                   toInt64(0) AS d_{st}" for st in states),
        cum_columns=",\n".join(f"           arrayCumSum(arraySort((d, kk) -> kk, groupArray(d_{st}), groupArray(k))) "
                               f"AS c_{st}" for st in states),
        join_columns=", ".join(f"c_{st} AS {c}" for st, c in zip(states, cols)),
        out_columns=",\n".join(f"       {c}" for c in cols),
    )


GRAFANA_STEP = "$__interval_s"


def grafana_jobs_by_state_sql(where: str, states: Sequence[str] = OVER_TIME_STATES) -> str:
    """The panel's SQL: steps at the multiples of `$__interval_s` inside the dashboard's time range."""
    div = _divisor(GRAFANA_STEP)
    start = f"intDiv(toUInt32($__fromTime) + {div} - 1, {div}) * {div}"
    n = f"greatest(toInt64(toUInt32($__toTime)) - toInt64({start}), -1) / {div} + 1"
    return jobs_by_state_sql(where, start, GRAFANA_STEP, f"floor({n})", states)


__all__ = ["OVER_TIME_STATES", "jobs_by_state_sql", "grafana_jobs_by_state_sql", "JOBS_BY_STATE_SQL"]
