"""Any permutation of the same events, with any duplication, gives the same numbers (hypothesis)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.engine import Engine
from processors.numbers import RESTART_CAUSES
from schemas.events import JOB_EVENT_TYPES, FileEvent, JobEvent

JOB_IDS = ["j1", "j2", "j3"]
FILES = ["in1", "in2", "in3", "out1", "out2"]
FILE_TYPES = ["input_declared", "delivered", "consumed", "skipped", "failed", "output_declared", "output_located"]


@st.composite
def job_events(draw, i):
    t = draw(st.sampled_from(JOB_EVENT_TYPES))
    kw = {}
    if t == "terminated":
        kw = dict(exit_code=draw(st.sampled_from([0, 1, None])), signal=draw(st.sampled_from([None, 9])),
                  cpu_user_s=draw(st.sampled_from([None, 10.5, 100.0])), cpu_sys_s=1.25,
                  wall_s=draw(st.sampled_from([None, 50.0, 200.0])))
    if t in ("evicted", "held"):
        kw = dict(wall_s=draw(st.sampled_from([None, 33.3])))
    return JobEvent(event_id=f"e{i}", ts=float(draw(st.integers(0, 20))), campaign="c",
                    stage=draw(st.sampled_from(["s1", "s2"])), job_id=draw(st.sampled_from(JOB_IDS)), type=t,
                    cores=draw(st.sampled_from([None, 1, 4])), **kw)


@st.composite
def file_events(draw, i):
    t = draw(st.sampled_from(FILE_TYPES))
    parents = draw(st.lists(st.sampled_from(["in1", "in2", "in3"]), min_size=1, max_size=2)) \
        if t == "output_declared" else None
    return FileEvent(event_id=f"e{i}", ts=float(draw(st.integers(0, 20))), campaign="c",
                     stage=draw(st.sampled_from(["s1", "s2"])), file=draw(st.sampled_from(FILES)), type=t,
                     parents=parents)


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 40))
    events = [draw(st.one_of(job_events(i), file_events(i))) for i in range(n)]
    dupes = draw(st.lists(st.sampled_from(events), max_size=15))
    shuffled = draw(st.permutations(events + dupes))
    return events, shuffled


def run(events):
    e = Engine()
    e.apply_all(events)
    return e.numbers(as_of=100.0)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_any_order_any_duplicates_same_numbers(scenario):
    events, shuffled = scenario
    a, b = run(events), run(shuffled)
    assert a == b
    for n in a:  # internal consistency holds for every scenario
        assert sum(n[f"jobs_{s}"] for s in ("idle", "running", "held", "suspended", "completed", "removed")) == n["jobs"]
        assert n["jobs_completed_ok"] + n["jobs_completed_failed"] == n["jobs_completed"]
        assert sum(n["restarts_by_cause"][c] for c in RESTART_CAUSES) == n["restarts"]
        assert sum(n[k] for k in ("files_located", "files_declared_not_located", "files_consumed_no_output",
                                  "files_in_flight", "files_failed", "files_pending")) == n["input_files"]


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_incremental_equals_from_scratch_at_every_prefix(scenario):
    """The incremental counters equal a fresh engine's at each step (no drift, no pass over all events)."""
    _, shuffled = scenario
    inc = Engine()
    for i, ev in enumerate(shuffled):
        inc.apply(ev)
        if i % 5 == 0 or i == len(shuffled) - 1:
            assert inc.numbers(as_of=100.0) == run(shuffled[: i + 1])
