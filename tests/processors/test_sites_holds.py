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


def test_raw_rows_keep_the_hold_codes_and_rebuild_every_field():
    from processors.rows import RAW_COLUMNS, event_from_raw_row, raw_event_row
    from tests.builders import file

    evs = [job("j", "held", 20.0, reason="disk", hold_code=12, hold_subcode=-28, site="S", host="h", cores=4,
               submission="sub", wall_s=5.0),
           job("j", "terminated", 30.0, exit_code=2, signal=9, cpu_user_s=1.5, cpu_sys_s=0.5, wall_s=3.0),
           file("o", "output_declared", 40.0, parents=["a", "b"], job_id="j", submission="sub"),
           file("o", "output_located", 41.0, location="enstore:/x")]
    for ev in evs:
        row = dict(zip(RAW_COLUMNS, raw_event_row(ev, "src", 0.0)))
        assert event_from_raw_row(row) == ev
    row = dict(zip(RAW_COLUMNS, raw_event_row(evs[0], "src", 0.0)))
    del row["hold_code"], row["hold_subcode"]  # a query written before the hold columns
    assert event_from_raw_row(row).hold_code is None
    row = dict(zip(RAW_COLUMNS, raw_event_row(evs[1], "src", 0.0)))
    row.update(cpu_user_s=1, wall_s=3)  # a store giving Float64 back as int: the contract's float
    assert type(event_from_raw_row(row).cpu_user_s) is float
