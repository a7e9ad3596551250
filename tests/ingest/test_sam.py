"""SAM snapshots -> events: the numbers equal the scenario's, and re-polls, restarts and two pollers change none."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ingest.sam import SamHttp, SamPoller, SamSource
from ingest.sam.api import METADATA_CHUNK
from processors.engine import Engine
from tests.ingest.samweb_standin import BUCKETS, SamStandin, Scenario, bucket_scenario

KEYS = BUCKETS + ("input_files", "files_without_located_output", "outputs_declared", "outputs_located")


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def poller(standin: SamStandin, ckpt: Path | None = None, *, clock: Clock | None = None,
           projects: tuple[str, ...] = ("nova_proj_1", "nova_proj_2_recovery"), dims: str | None = "data_tier reco",
           **http_kw) -> SamPoller:
    src = SamSource(standin.base, "nova_def", "nova_prod5_mc", "fd_reco", projects, dims)
    return SamPoller(src, SamHttp(standin.base, sleep=lambda s: None, **http_kw), ckpt, clock=clock or Clock())


def numbers(events) -> dict:
    e = Engine()
    e.apply_all(events)
    [row] = e.numbers(as_of=2e9)
    return {k: row[k] for k in KEYS}


def test_numbers_equal_the_scenario(tmp_path):
    sc, expected = bucket_scenario(600, seed=3)
    assert all(expected[b] > 50 for b in BUCKETS)
    with SamStandin(sc) as s:
        p = poller(s, tmp_path / "ck.json")
        res = p.poll()
        p.commit()
    assert res.dead_letters == []
    assert numbers(res.events) == expected
    # every event is a file event of the stage, with an id from the SAM source
    assert {ev.campaign for ev in res.events} == {"nova_prod5_mc"}
    assert all(ev.event_id.startswith("sam:") for ev in res.events)
    assert len({ev.event_id for ev in res.events}) == len(res.events)


def test_repoll_restart_and_second_poller_change_no_number(tmp_path):
    sc, expected = bucket_scenario(300, seed=5)
    with SamStandin(sc) as s:
        a = poller(s, tmp_path / "a.json", clock=Clock(1_700_000_000))
        first = a.poll()
        a.commit()
        again = a.poll()  # same snapshot: nothing new
        a.commit()
        restarted = poller(s, tmp_path / "a.json", clock=Clock(1_700_009_000)).poll()
        other = poller(s, tmp_path / "b.json", clock=Clock(1_700_005_000)).poll()  # a second poller
    assert again.events == [] and restarted.events == []
    assert {ev.event_id for ev in other.events} == {ev.event_id for ev in first.events}
    assert numbers(first.events) == expected
    # both pollers' events into one store, in either order: the same numbers
    assert numbers(first.events + other.events) == expected
    assert numbers(other.events + first.events) == expected


def test_crash_before_commit_writes_the_same_events_again(tmp_path):
    """kill -9 between the poll and the acknowledged write: the restart re-sends exact copies (same ts)."""
    sc, _ = bucket_scenario(120, seed=7)
    with SamStandin(sc) as s:
        crashed = poller(s, tmp_path / "ck.json", clock=Clock(1_700_000_000)).poll()  # no commit
        again = poller(s, tmp_path / "ck.json", clock=Clock(1_700_100_000))
        res = again.poll()
        again.commit()
        assert poller(s, tmp_path / "ck.json").poll().events == []
    from schemas.events import encode_event

    assert sorted(map(encode_event, res.events)) == sorted(map(encode_event, crashed.events))


def test_first_seen_ts_and_sam_times(tmp_path):
    inputs = ["a.raw", "b.raw", "c.raw"]
    sc = Scenario(definitions={"nova_def": inputs},
                  projects={"nova_proj_1": {"start_time": "2017-06-06T12:00:00+00:00",
                                            "status": {"a.raw": "delivered", "b.raw": "failed"}},
                            "nova_proj_2_recovery": {"start_time": "2017-06-09T12:00:00+00:00",
                                                     "status": {"b.raw": "delivered"}}},
                  files={"a.raw": {}, "b.raw": {}, "c.raw": {},
                         "a.reco": {"parents": ["a.raw"], "data_tier": "reco", "create_date": "2017-06-07T08:00:00Z"}})
    clock = Clock(1_700_000_000)
    with SamStandin(sc) as s:
        p = poller(s, tmp_path / "ck.json", clock=clock)
        first = {(ev.type, ev.file, ev.submission): ev for ev in p.poll().events}
        p.commit()
        # a project's facts: SAM's start time of the project (the same for every poller)
        assert first[("delivered", "a.raw", "nova_proj_1")].ts == 1496750400.0
        assert first[("input_declared", "c.raw", None)].ts == 1_700_000_000
        # SAM's own time for an output: its create_date
        assert first[("output_declared", "a.reco", None)].ts == 1496822400.0
        assert first[("output_declared", "a.reco", None)].parents == ["a.raw"]
        # the recovery project's fact is later than the first project's
        assert first[("delivered", "b.raw", "nova_proj_2_recovery")].ts > first[("failed", "b.raw", "nova_proj_1")].ts
        # an hour later a.raw is consumed and its output located: new facts get the new time, old ones keep theirs
        sc.projects["nova_proj_1"]["status"]["a.raw"] = "consumed"
        sc.files["a.reco"]["locations"] = ["enstore:/pnfs/nova/archive/x(vp1@ts)"]
        clock.t += 3600
        second = {(ev.type, ev.file): ev for ev in p.poll().events}
        p.commit()
    assert set(second) == {("consumed", "a.raw"), ("output_located", "a.reco")}
    assert second[("consumed", "a.raw")].ts == 1496750400.0  # after `delivered` by the contract's same-ts order
    assert second[("output_located", "a.reco")].ts == 1_700_003_600  # first seen
    assert second[("output_located", "a.reco")].location == "enstore:/pnfs/nova/archive/x(vp1@ts)"
    n = numbers(list(first.values()) + list(second.values()))
    assert (n["files_located"], n["files_in_flight"], n["files_pending"]) == (1, 1, 1)


def test_status_changes_across_polls_follow_sam(tmp_path):
    """Delivered, then failed, then delivered again by the recovery project, then consumed with an output."""
    sc = Scenario(definitions={"nova_def": ["f.raw"]},
                  projects={"nova_proj_1": {"status": {"f.raw": "delivered"}},
                            "nova_proj_2_recovery": {"status": {}}}, files={"f.raw": {}})
    clock = Clock()
    events = []
    steps = [("nova_proj_1", "failed", "files_failed"), ("nova_proj_2_recovery", "delivered", "files_in_flight"),
             ("nova_proj_2_recovery", "consumed", "files_consumed_no_output")]
    with SamStandin(sc) as s:
        p = poller(s, tmp_path / "ck.json", clock=clock)
        events += p.poll().events
        p.commit()
        assert numbers(events)["files_in_flight"] == 1
        for project, status, bucket in steps:
            sc.projects[project]["status"]["f.raw"] = status
            clock.t += 600
            events += p.poll().events
            p.commit()
            assert numbers(events)[bucket] == 1, (project, status)


def test_request_count_is_bounded_for_30000_files(tmp_path, caplog):
    sc, expected = bucket_scenario(30_000, seed=11)
    caplog.set_level("INFO", logger="stagewatch.sam")
    with SamStandin(sc) as s:
        p = poller(s, tmp_path / "ck.json")
        res = p.poll()
        p.commit()
        children = res.children
        assert res.requests == 1 + 5 * 2 + 1 + math.ceil(children / METADATA_CHUNK) == s.count()
        assert res.requests <= 40
        second = p.poll()
        p.commit()
    unlocated = expected["outputs_declared"] - expected["outputs_located"]
    assert second.events == []
    assert second.requests == 1 + 5 * 2 + 1 + math.ceil(unlocated / METADATA_CHUNK)
    assert numbers(res.events) == expected
    assert any("sam.poll" in r.message and f"requests={res.requests}" in r.message for r in caplog.records)


def test_output_dims_restrict_children_and_inputs_only(tmp_path):
    """Children outside --output-dims are not outputs; a project's files outside the definition are ignored."""
    sc = Scenario(definitions={"nova_def": ["a.raw"]},
                  projects={"nova_proj_1": {"status": {"a.raw": "consumed", "other.raw": "consumed"}}},
                  files={"a.raw": {}, "other.raw": {},
                         "a.log": {"parents": ["a.raw"], "data_tier": "log", "locations": ["dcache:/logs"]},
                         "a.reco": {"parents": ["a.raw", "other.raw"], "data_tier": "reco"}})
    with SamStandin(sc) as s:
        evs = poller(s, tmp_path / "ck.json", projects=("nova_proj_1",)).poll().events
    assert sorted((e.type, e.file) for e in evs) == [("consumed", "a.raw"), ("input_declared", "a.raw"),
                                                      ("output_declared", "a.reco")]
    [out] = [e for e in evs if e.type == "output_declared"]
    assert out.parents == ["a.raw"]  # only the stage's inputs


def test_values_the_contract_refuses_are_dead_letters_once(tmp_path):
    long_name = "x" * 1100
    sc = Scenario(definitions={"nova_def": ["ok.raw", long_name]}, projects={"nova_proj_1": {"status": {}}},
                  files={"ok.raw": {}, long_name: {}})
    with SamStandin(sc) as s:
        p = poller(s, tmp_path / "ck.json", projects=("nova_proj_1",))
        res = p.poll()
        p.commit()
        assert [e.file for e in res.events] == ["ok.raw"]
        [dl] = res.dead_letters
        assert "1024" in dl.reason or "length" in dl.reason
        assert long_name.encode() in dl.raw
        again = p.poll()
    assert again.events == [] and again.dead_letters == []


def test_checkpoint_of_another_source_is_refused(tmp_path):
    from ingest.sam.checkpoint import SamCheckpointMismatch

    sc, _ = bucket_scenario(10)
    with SamStandin(sc) as s:
        p = poller(s, tmp_path / "ck.json")
        p.poll()
        p.commit()
        with pytest.raises(SamCheckpointMismatch, match="another SAM source"):
            SamPoller(SamSource(s.base, "nova_def", "nova_prod5_mc", "other_stage"), SamHttp(s.base),
                      tmp_path / "ck.json")


def test_names_that_are_not_sam_names_are_refused():
    from ingest.sam import SamError

    with pytest.raises(SamError, match="not a SAM name"):
        SamPoller(SamSource("http://x/api", "def", "c", "s", ("a project",)), SamHttp("http://x/api"), None)


def test_projects_without_start_time_are_ordered_by_rank_at_first_sight(tmp_path):
    """No start time in the summaries: first-seen time, the projects' order breaking the tie (1 ms a rank)."""
    sc = Scenario(definitions={"nova_def": ["b.raw"]},
                  projects={"nova_proj_1": {"status": {"b.raw": "failed"}},
                            "nova_proj_2_recovery": {"status": {"b.raw": "delivered"}}}, files={"b.raw": {}})
    with SamStandin(sc) as s:
        s.scenario.projects["nova_proj_1"]["start_time"] = None
        s.scenario.projects["nova_proj_2_recovery"]["start_time"] = None
        evs = {e.type: e for e in poller(s, tmp_path / "ck.json", clock=Clock(1_700_000_000)).poll().events}
    assert evs["failed"].ts == 1_700_000_000 and evs["delivered"].ts == 1_700_000_000.001
    assert numbers(list(evs.values()))["files_in_flight"] == 1


def test_two_pollers_started_at_different_times_write_identical_status_events(tmp_path):
    sc, expected = bucket_scenario(200, seed=9)
    with SamStandin(sc) as s:
        a = poller(s, tmp_path / "a.json", clock=Clock(1_700_000_000)).poll().events
        b = poller(s, tmp_path / "b.json", clock=Clock(1_700_086_400)).poll().events
    from schemas.events import encode_event

    status = ("delivered", "consumed", "skipped", "failed", "output_declared")
    assert sorted(encode_event(e) for e in a if e.type in status) == sorted(
        encode_event(e) for e in b if e.type in status)
    assert numbers(a + b) == numbers(b + a) == expected
