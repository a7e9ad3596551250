"""The job summary's current hold (processors.jobs): reason, HTCondor codes, held since."""

from processors.jobs import summarize_job, sort_key
from processors.rows import job_row
from tests.builders import job


def summary(events):
    return summarize_job(sorted(events, key=sort_key))


def test_held_job_has_the_latest_holds_reason_and_codes_and_is_held_since_the_first():
    s = summary([job("j", "started", 10.0, site="FNAL"),
                 job("j", "held", 20.0, reason="first", hold_code=12, hold_subcode=2),
                 job("j", "held", 30.0, reason="again", hold_code=13, hold_subcode=-1)])
    assert (s.state, s.hold_reason, s.hold_code, s.hold_subcode, s.held_ts) == ("held", "again", 13, -1, 20.0)


def test_released_or_restarted_job_has_no_current_hold():
    for after in ("released", "started", "removed"):
        s = summary([job("j", "started", 10.0), job("j", "held", 20.0, reason="x", hold_code=1),
                     job("j", after, 30.0)])
        assert (s.hold_reason, s.hold_code, s.hold_subcode, s.held_ts) == (None, None, None, None), after


def test_held_again_later_is_held_since_the_new_hold():
    s = summary([job("j", "held", 5.0, reason="a"), job("j", "released", 6.0), job("j", "held", 9.0, reason="b")])
    assert (s.hold_reason, s.held_ts, s.hold_code) == ("b", 9.0, None)


def test_job_row_carries_the_hold():
    from processors.stage import StageState

    st = StageState("c", "s")
    for ev in [job("j", "started", 10.0, campaign="c", stage="s"),
               job("j", "held", 20.0, reason="disk", hold_code=12, hold_subcode=28, campaign="c", stage="s")]:
        st.apply(ev)
    st.settle()
    row = job_row(st, st.jobs["j"].view)
    assert (row["hold_reason"], row["hold_code"], row["hold_subcode"], row["held_ts"]) == ("disk", 12, 28, 20.0)
