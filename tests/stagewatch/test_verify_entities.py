"""`verify` checks every entity row and every stage row (presence and values), on chDB and on ClickHouse 18.16.

Each test damages one kind of row the way an interrupted or buggy writer would (a state row missing, a
value wrong, a row with no raw events, a stale attempt) while every stage total stays right: verify
must name the entity. The old verify looked at entities only when a stage total differed, so every
one of these said ok.
"""

import uuid

import pytest

from processors.rows import raw_event_row
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from stagewatch.verify import verify
from tests.builders import file, job

T0 = 1_500_000_000.0


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.servers)], scope="module")
def store(request, tmp_path_factory):
    if request.param == "chdb":
        url = f"chdb:{tmp_path_factory.mktemp('verify-entities') / 'store'}"
    else:
        url = request.getfixturevalue("clickhouse_server").store_url
    st = open_store(url)
    yield st
    st.close()


def scenario(c: str) -> list:
    """Jobs with restarts, a completed and a held one; files in several buckets, an output with a parent."""
    kw = {"campaign": c}
    return [
        job("1", "submitted", T0, submission="s1", **kw), job("1", "started", T0 + 10, cores=2, site="A", host="h1", **kw),
        job("1", "evicted", T0 + 100, **kw), job("1", "started", T0 + 200, site="B", host="h2", **kw),
        job("1", "terminated", T0 + 900, exit_code=0, cpu_user_s=300, cpu_sys_s=10, wall_s=400, **kw),
        job("2", "submitted", T0, **kw), job("2", "started", T0 + 20, **kw), job("2", "held", T0 + 30, reason="mem", **kw),
        file("a", "input_declared", T0, **kw), file("b", "input_declared", T0, **kw), file("c", "input_declared", T0, **kw),
        file("a", "delivered", T0 + 10, job_id="1", **kw), file("a.out", "output_declared", T0 + 900, parents=["a"], **kw),
        file("a.out", "output_located", T0 + 950, location="enstore:/x", **kw),
        file("b", "delivered", T0 + 10, job_id="2", **kw), file("b", "consumed", T0 + 100, job_id="2", **kw),
    ]


@pytest.fixture
def campaign(store):
    c = f"v{uuid.uuid4().hex[:8]}"  # the server store is shared: every test has its own campaign
    replay_events(store, scenario(c))
    report = verify(store, campaign=c)
    assert report.ok, report.differences
    assert (report.stages_checked, report.jobs_checked, report.files_checked) == (1, 2, 4)
    return c


def one(store, sql):
    (row,) = store.query(sql)
    return row


def test_a_job_with_raw_events_but_no_state_row_is_named(store, campaign):
    # raw events of a new job, written without its state rows: the stage total is then also behind, but
    # the point is that the job itself is named
    extra = [job("3", "submitted", T0 + 5, campaign=campaign), job("3", "started", T0 + 6, campaign=campaign)]
    store.insert("raw_events", [raw_event_row(e, "test", 1.0) for e in extra], raw_event_columns())
    report = verify(store, campaign=campaign)
    assert not report.ok
    assert any(f"job {campaign} / stage1 / 3: has raw events but no job_state row" in d for d in report.differences)
    assert any("3: 0 job_attempts row(s)" in d for d in report.differences)


def raw_event_columns():
    from processors.rows import RAW_COLUMNS

    return RAW_COLUMNS


@pytest.mark.parametrize("column,value", [("host", "elsewhere"), ("exit_code", 3), ("submitted_ts", None),
                                          ("submission", ""), ("first_ts", T0 - 1.5), ("state", "idle")])
def test_a_wrong_job_value_with_right_stage_totals_is_named(store, campaign, column, value):
    row = one(store, f"SELECT * FROM job_state FINAL WHERE campaign = '{campaign}' AND job_id = '1'")
    store.insert("job_state", [dict(row, **{column: value}, version=row["version"] + 100)])
    report = verify(store, campaign=campaign)
    assert not report.ok
    assert not any(d.startswith(f"{campaign} /") for d in report.differences)  # the stage row is right
    (line,) = report.differences
    assert f"job {campaign} / stage1 / 1: {column} stored {value!r}" in line
    assert report.entity_differences == 1


@pytest.mark.parametrize("column,value", [("bucket", "files_pending"), ("parents", ["zz"]), ("outputs", []),
                                          ("location", ""), ("located_ts", None), ("disposition_job", "9"),
                                          ("deliveries", 2), ("consumed", 0)])
def test_a_wrong_file_value_with_right_stage_totals_is_named(store, campaign, column, value):
    name = {"parents": "a.out", "location": "a.out", "located_ts": "a.out", "outputs": "a"}.get(column, "b")
    row = one(store, f"SELECT * FROM file_state FINAL WHERE campaign = '{campaign}' AND file = '{name}'")
    store.insert("file_state", [dict(row, **{column: value}, version=row["version"] + 100)])
    report = verify(store, campaign=campaign)
    (line,) = report.differences
    assert f"file {campaign} / stage1 / {name}: {column} stored {value!r}" in line


def test_state_rows_without_raw_events_are_named(store, campaign):
    jrow = one(store, f"SELECT * FROM job_state FINAL WHERE campaign = '{campaign}' AND job_id = '2'")
    frow = one(store, f"SELECT * FROM file_state FINAL WHERE campaign = '{campaign}' AND file = 'c'")
    store.insert("job_state", [dict(jrow, job_id="ghost-job")])
    store.insert("file_state", [dict(frow, file="ghost-file")])
    report = verify(store, campaign=campaign)
    assert sorted(report.differences) == sorted([
        f"  job {campaign} / stage1 / ghost-job: has a job_state row but no raw events",
        f"  file {campaign} / stage1 / ghost-file: has a file_state row but no raw events"])


def test_a_stale_attempt_row_is_not_counted_and_is_said(store, campaign):
    """An attempt row beyond the job's attempts (what a winning conflicting copy leaves: rows are never
    deleted) is counted by no reader (schemas.queries.current_attempts), so verify passes and says how many
    it left out; tests/stagewatch/test_stale_attempts.py has the scenarios and a reader that counts it."""
    row = one(store, f"SELECT * FROM job_attempts FINAL WHERE campaign = '{campaign}' AND job_id = '1' AND attempt = 2")
    store.insert("job_attempts", [dict(row, attempt=3)])
    report = verify(store, campaign=campaign)
    assert report.ok, report.differences
    assert report.stale_attempt_rows == 1


def test_a_missing_attempt_row_is_named(store, campaign):
    jrow = one(store, f"SELECT * FROM job_state FINAL WHERE campaign = '{campaign}' AND job_id = '1'")
    store.insert("job_state", [dict(jrow, job_id="1b")])  # a job whose attempts have no rows
    store.insert("raw_events", [raw_event_row(job("1b", "started", T0 + 10, campaign=campaign), "t", 1.0)],
                 raw_event_columns())
    report = verify(store, campaign=campaign)
    assert any("1b: 0 job_attempts row(s) up to attempt 0 but raw events give 1 attempt(s)" in d
               for d in report.differences), report.differences


def test_a_missing_stage_row_and_a_stage_row_without_events(store, campaign):
    srow = one(store, f"SELECT * FROM stage_numbers FINAL WHERE campaign = '{campaign}'")
    store.insert("stage_numbers", [dict(srow, stage="ghost-stage")])
    report = verify(store, campaign=campaign)
    assert report.differences == [f"{campaign} / ghost-stage: has stored numbers but no raw events"]
    other = f"{campaign}-b"
    store.insert("raw_events", [raw_event_row(job("9", "submitted", T0, campaign=other), "t", 1.0)],
                 raw_event_columns())
    report = verify(store, campaign=other)
    assert f"{other} / stage1: has raw events but no stored numbers" in report.differences
    assert f"  job {other} / stage1 / 9: has raw events but no job_state row" in report.differences


def test_the_entity_list_is_capped_and_counted(store, campaign):
    extra = [job(f"x{i}", "submitted", T0, campaign=campaign) for i in range(7)]
    store.insert("raw_events", [raw_event_row(e, "t", 1.0) for e in extra], raw_event_columns())
    report = verify(store, campaign=campaign, max_entities=3)
    jobs = [d for d in report.differences if "no job_state row" in d]
    assert len(jobs) == 3
    assert "  ... and 4 more jobs (verify lists 3 per check)" in report.differences
    assert report.entity_differences == 7
