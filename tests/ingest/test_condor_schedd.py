"""The schedd-wide event log: each job's campaign/stage/submission/site from its own JobAdInformation (028)
events, events held (bounded) until they are known, jobs without the attributes skipped and counted.

Logs are written in HTCondor's text format (hand-written 028 events, and ingest.condor.writer, whose
events htcondor2 parses back) and read by the real bindings.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from ingest.condor import LogFollower, ReadStats, Routing, RoutingError, convert_log, convert_logs
from ingest.condor.writer import POMS_ATTRS, write_event_log
from ingest.simulator import PRESETS, simulate_many
from processors.engine import Engine
from schemas.events import JobEvent
from tests.ingest.test_condor_log import T, U, _hdr, evicted, executing, held, submitted, terminated

ATTRS = {"campaign": "POMS4_CAMPAIGN_NAME", "stage": "POMS4_CAMPAIGN_STAGE_NAME"}
ROUTING = Routing(attrs=ATTRS)


def ad(job: str, when: str, trigger: int, **attrs: str) -> str:
    """A JobAdInformation event as the schedd writes it after an event (EVENT_LOG_JOB_AD_INFORMATION_ATTRS)."""
    cluster, proc = job.split(".")
    lines = [_hdr(28, job, when) + "Job ad information event triggered.", f"Proc = {int(proc)}",
             f'EventTime = "{when.rstrip("Z")}"', 'TriggerEventTypeName = "ULOG_X"', f"TriggerEventTypeNumber = {trigger}"]
    lines += [f'{k} = "{v}"' for k, v in attrs.items()]
    lines += [f"Cluster = {int(cluster)}", "EventTypeNumber = 28", "..."]
    return "\n".join(lines) + "\n"


def poms(campaign: str, stage: str, **more: str) -> dict[str, str]:
    return {"POMS4_CAMPAIGN_NAME": campaign, "POMS4_CAMPAIGN_STAGE_NAME": stage, **more}


def write(tmp_path: Path, chunks: list[str], name: str = "EventLog") -> Path:
    p = tmp_path / name
    p.write_text("".join(chunks))
    return p


def run(paths, routing: Routing = ROUTING, schedd: str | None = "s1"):
    stats, dead = ReadStats(), []
    evs = list(convert_logs([str(p) for p in paths], routing=routing, schedd=schedd, stats=stats,
                            on_dead_letter=dead.append))
    return evs, stats, dead


def two_jobs() -> list[str]:
    """Jobs 10.0 (nova/mcgen) and 11.0 (nova/reco) interleaved, each event followed by its 028."""
    a, b = poms("nova", "mcgen"), poms("nova", "reco")
    return [
        submitted("10.0", T("10:00:00")), ad("10.0", T("10:00:00"), 0, **a),
        submitted("11.0", T("10:00:05")), ad("11.0", T("10:00:05"), 0, **b),
        executing("10.0", T("10:01:00")), ad("10.0", T("10:01:00"), 1, **a),
        executing("11.0", T("10:01:30")), ad("11.0", T("10:01:30"), 1, **b),
        terminated("11.0", T("10:20:00")), ad("11.0", T("10:20:00"), 5, **b),
        evicted("10.0", T("10:30:00")), ad("10.0", T("10:30:00"), 4, **a),
    ]


def test_each_job_gets_the_campaign_and_stage_of_its_own_028_events_and_the_ids_of_a_per_job_log(tmp_path):
    evs, stats, dead = run([write(tmp_path, two_jobs())])
    assert [(e.job_id, e.type, e.campaign, e.stage) for e in evs] == [
        ("s1#10.0", "submitted", "nova", "mcgen"), ("s1#11.0", "submitted", "nova", "reco"),
        ("s1#10.0", "started", "nova", "mcgen"), ("s1#11.0", "started", "nova", "reco"),
        ("s1#11.0", "terminated", "nova", "reco"), ("s1#10.0", "evicted", "nova", "mcgen")]
    # routing changes no id: the same job's events in a per-submission log with --campaign/--stage
    solo = write(tmp_path, [c for c in two_jobs() if "(010." in c.split("\n")[0]], "job10.log")
    per_job = list(convert_log(solo, campaign="nova", stage="mcgen", schedd="s1"))
    assert [e for e in evs if e.job_id == "s1#10.0"] == per_job
    assert (stats.ads, stats.job_events, stats.dead_letters, stats.jobs_without_attrs) == (6, 6, 0, 0)
    assert not dead


def test_events_before_the_first_028_are_held_then_released_in_file_order(tmp_path):
    a = poms("nova", "mcgen", POMS4_SUBMISSION_ID="77")
    log = write(tmp_path, [submitted("10.0", T("10:00:00")), executing("10.0", T("10:01:00")),
                           evicted("10.0", T("10:30:00")), ad("10.0", T("10:30:00"), 4, **a),
                           executing("10.0", T("10:40:00")), terminated("10.0", T("10:50:00"))])
    evs, stats, dead = run([log], Routing(attrs={**ATTRS, "submission": "POMS4_SUBMISSION_ID"}))
    assert [e.type for e in evs] == ["submitted", "started", "evicted", "started", "terminated"]
    assert {(e.campaign, e.stage, e.submission) for e in evs} == {("nova", "mcgen", "77")}
    assert evs[2].wall_s == 29 * 60  # the per-attempt state is the mapper's, whatever waited
    assert not dead and stats.dead_letters == 0


def test_jobs_whose_ads_lack_the_attributes_are_skipped_and_counted_or_kept_by_the_defaults(tmp_path):
    chunks = two_jobs() + [submitted("12.0", T("10:02:00")), ad("12.0", T("10:02:00"), 0, Owner="alice"),
                           executing("12.0", T("10:03:00")), ad("12.0", T("10:03:00"), 1, Owner="alice"),
                           terminated("12.0", T("10:09:00")), ad("12.0", T("10:09:00"), 5, Owner="alice")]
    log = write(tmp_path, chunks)
    evs, stats, dead = run([log])
    assert {e.job_id for e in evs} == {"s1#10.0", "s1#11.0"}
    assert (stats.jobs_without_attrs, stats.events_without_attrs) == (1, 3)
    assert "1 jobs without the campaign/stage attributes skipped (3 events)" in stats.summary()
    assert not dead
    kept, stats, dead = run([log], Routing(attrs=ATTRS, default_campaign="other", default_stage="unlabelled"))
    assert [(e.type, e.campaign, e.stage) for e in kept if e.job_id == "s1#12.0"] == [
        ("submitted", "other", "unlabelled"), ("started", "other", "unlabelled"),
        ("terminated", "other", "unlabelled")]
    assert stats.jobs_without_attrs == 0 and stats.defaulted_events >= 1 and not dead


def test_a_job_with_no_028_by_the_end_is_a_dead_letter_with_the_reason(tmp_path):
    log = write(tmp_path, two_jobs() + [submitted("13.0", T("10:40:00")), executing("13.0", T("10:41:00"))])
    evs, stats, dead = run([log])
    assert "s1#13.0" not in {e.job_id for e in evs}
    assert len(dead) == 2 and stats.dead_letters == 2
    assert all("no JobAdInformation (028) event of job 13.0" in d.reason and "before the end of the log" in d.reason
               and "EVENT_LOG_JOB_AD_INFORMATION_ATTRS" in d.reason for d in dead)
    assert dead[0].source == str(log) and dead[0].position.startswith("byte ")
    raw = json.loads(dead[0].raw)
    assert raw["type"] == "submitted" and raw["job_id"] == "s1#13.0"  # the record, for a human to fix
    evs, stats, dead = run([log], Routing(attrs=ATTRS, default_campaign="c", default_stage="s"))
    assert [(e.type, e.campaign) for e in evs if e.job_id == "s1#13.0"] == [("submitted", "c"), ("started", "c")]
    assert not dead


def test_held_events_are_bounded_in_number_and_in_log_time(tmp_path):
    chunks = [submitted(f"20.{i}", T(f"10:00:{i:02d}")) for i in range(6)]
    chunks += [submitted("21.0", T("12:00:00")), ad("21.0", T("12:00:00"), 0, **poms("n", "s"))]
    log = write(tmp_path, chunks)
    # by number: at most 4 held; the two held longest go first
    evs, stats, dead = run([log], Routing(attrs=ATTRS, max_held=4, max_hold_s=1e9))
    assert [d.reason.split(" carrying")[0] for d in dead][:2] == [
        "no JobAdInformation (028) event of job 20.0", "no JobAdInformation (028) event of job 20.1"]
    assert "among the 4 most recent held events" in dead[0].reason
    assert len(dead) == 6 and [e.job_id for e in evs] == ["s1#21.0"]
    # by age: events two hours older than the newest event read
    evs, stats, dead = run([log], Routing(attrs=ATTRS, max_held=1000, max_hold_s=3600))
    assert len(dead) == 6 and all("within 3600 s (log time)" in d.reason for d in dead)
    # a late 028 within the bounds releases everything
    late = write(tmp_path, chunks[:6] + [ad(f"20.{i}", T("10:30:00"), 0, **poms("n", "s")) for i in range(6)], "late")
    evs, stats, dead = run([late], Routing(attrs=ATTRS, max_held=10, max_hold_s=3600))
    assert len(evs) == 6 and not dead


def test_site_from_a_match_attribute_of_the_028_after_the_execute_event(tmp_path):
    a = poms("nova", "mcgen")
    props = '\tGLIDEIN_Site = "FromSlot"\n'
    log = write(tmp_path, [
        submitted("10.0", T("10:00:00")), ad("10.0", T("10:00:00"), 0, MATCH_GLIDEIN_Site="$$(GLIDEIN_Site:Unknown)", **a),
        executing("10.0", T("10:01:00"), props=props), ad("10.0", T("10:01:00"), 1, MATCH_GLIDEIN_Site="FNAL", **a),
        evicted("10.0", T("10:30:00")), ad("10.0", T("10:30:00"), 4, MATCH_GLIDEIN_Site="FNAL", **a),
        executing("10.0", T("10:40:00"), props=props),
        ad("10.0", T("10:40:00"), 1, MATCH_GLIDEIN_Site="$$(GLIDEIN_Site:Unknown)", **a),
        terminated("10.0", T("10:50:00")), ad("10.0", T("10:50:00"), 5, **a)])
    evs, _, _ = run([log], Routing(attrs={**ATTRS, "site": "MATCH_GLIDEIN_Site"}))
    assert [(e.type, e.site) for e in evs] == [("submitted", None), ("started", "FNAL"), ("evicted", "FNAL"),
                                               ("started", "FromSlot"), ("terminated", "FromSlot")]
    without, _, _ = run([log])
    assert [e.site for e in without if e.type == "started"] == ["FromSlot", "FromSlot"]


def test_held_event_maps_hold_reason_code_and_subcode(tmp_path):
    log = write(tmp_path, [submitted("10.0", T("10:00:00")), executing("10.0", T("10:01:00")),
                           held("10.0", T("10:02:00"))])
    (_, _, h) = convert_log(log, campaign="c", stage="s")
    assert (h.type, h.hold_code, h.hold_subcode) == ("held", 13, 2)
    out_of_bounds = write(tmp_path, [_hdr(12, "10.0", T("10:02:00")) + "Job was held.\n\tbad\n\tCode -5 Subcode 2\n...\n"],
                          "neg.log")
    (h,) = convert_log(out_of_bounds, campaign="c", stage="s")  # the event stays; the bad code is left out
    assert (h.hold_code, h.hold_subcode) == (None, 2)


def dedup_jobs(preset: str) -> dict[str, list[JobEvent]]:
    seen, by = set(), collections.defaultdict(list)
    for e in simulate_many(PRESETS[preset](), 1):
        if isinstance(e, JobEvent) and e.event_id not in seen:
            seen.add(e.event_id)
            by[e.job_id.split("#")[0]].append(e)
    return by


KEYS = ("jobs", "jobs_idle", "jobs_running", "jobs_held", "jobs_completed", "jobs_completed_ok", "jobs_removed",
        "job_attempts", "restarts", "restarts_by_cause", "cpu_efficiency_pct", "badput_core_hours")


def numbers(events) -> dict:
    e = Engine()
    e.apply_all(events)
    return {(n["campaign"], n["stage"]): {k: n[k] for k in KEYS} for n in e.numbers()}


def test_a_schedd_wide_log_of_the_simulators_jobs_gives_the_simulators_numbers(tmp_path):
    """Both stages of the tiny preset's schedds, one event log each, with a 028 after every event."""
    for schedd, evs in dedup_jobs("tiny").items():
        evs.sort(key=lambda e: e.ts)
        log = tmp_path / f"{schedd}.log"
        with open(log, "w") as f:
            write_event_log(evs, f)
        got, stats, dead = run([log], Routing(attrs=POMS_ATTRS), schedd=schedd)
        assert not dead and stats.job_events == len(evs) and len(numbers(got)) >= 1
        assert numbers(got) == numbers(evs)
        assert (collections.Counter((e.job_id, e.site) for e in got if e.type == "started")
                == collections.Counter((e.job_id, e.site) for e in evs if e.type == "started"))
        assert {e.submission for e in got} == {e.submission for e in evs}


def test_routing_options_are_checked_before_anything_is_read():
    for bad, said in [(Routing(campaign="c", attrs=ATTRS), "--campaign and --campaign-attr"),
                      (Routing(attrs={"stage": "S"}), "No campaign"),
                      (Routing(campaign="c", stage="s", default_campaign="d"), "--default-campaign only applies"),
                      (Routing(attrs={**ATTRS, "color": "X"}), "'color' is not one of"),
                      (Routing(campaign="c" * 1025, stage="s"), "1 to 1,024 characters")]:
        with pytest.raises(RoutingError, ) as exc:
            bad.check()
        assert said in str(exc.value)


# ---------------------------------------------------------------------------------------------------
# The follower: held state survives restarts and rotations
# ---------------------------------------------------------------------------------------------------


def follow_all(paths, ckpt: Path, *, restart_every: int | None = None, crash_every: int | None = None,
               routing: Routing = ROUTING) -> tuple[list, list]:
    """Poll one event at a time, publishing then committing; a new follower from the checkpoint every
    ``restart_every`` polls; every ``crash_every`` polls, a poll whose results are dropped without a commit."""
    published, dead = [], []

    def make():
        return LogFollower([str(p) for p in paths], routing=routing, schedd="s1", checkpoint_path=ckpt,
                           rotation_grace_s=0.0)

    fol, n, idle = make(), 0, 0
    while idle < 3:
        n += 1
        before = (fol.reading, fol.offset)
        got, dl = fol.poll(1), fol.take_dead_letters()
        if crash_every and n % crash_every == 0:
            fol.close()
            fol = make()  # kill -9 before publishing: nothing of that poll is kept
            continue
        published.extend(got)
        dead.extend(dl)
        if fol.uncommitted:
            fol.commit()
        if restart_every and n % restart_every == 0:
            fol.close()
            fol = make()
        idle = idle + 1 if (fol.reading, fol.offset) == before and not got else 0
    fol.close()
    return published, dead


@pytest.mark.parametrize("restart_every,crash_every", [(None, None), (1, None), (2, 3), (None, 2)])
def test_follower_restarted_or_killed_anywhere_loses_and_duplicates_nothing_held_included(tmp_path, restart_every,
                                                                                         crash_every):
    chunks = [submitted("30.0", T("10:00:00")), executing("30.0", T("10:01:00"))]  # held: the 028 comes later
    chunks += two_jobs()
    chunks += [ad("30.0", T("10:35:00"), 1, **poms("nova", "late")), terminated("30.0", T("10:40:00")),
               submitted("31.0", T("10:41:00"))]  # never routed: still held at the end
    log = write(tmp_path, chunks)
    expected, _, _ = run([log])
    published, dead = follow_all([log], tmp_path / "ckpt", restart_every=restart_every, crash_every=crash_every)
    assert [e.event_id for e in published] == [e.event_id for e in expected if e.job_id != "s1#31.0"]
    assert published == [e for e in expected if e.job_id != "s1#31.0"]
    assert not dead
    saved = json.loads((tmp_path / "ckpt").read_bytes())
    assert saved["format"] == "stagewatch-condor-log-checkpoint/3"
    assert [h[0] for h in saved["held"]] == ["31.0"]  # the held event is in the checkpoint, not lost


def test_follower_reads_the_rotated_files_given_first_then_follows_the_live_one(tmp_path):
    chunks = two_jobs()
    old = write(tmp_path, chunks[:7], "EventLog.old")  # the rotation cut between an event and its 028
    live = write(tmp_path, chunks[7:], "EventLog")
    expected, _, _ = run([old, live])
    assert len(expected) == 6
    published, dead = follow_all([old, live], tmp_path / "ckpt", restart_every=2)
    assert published == expected and not dead
    with open(live, "a") as f:  # it keeps following the live file
        f.write(terminated("10.0", T("11:00:00")) + ad("10.0", T("11:00:00"), 5, **poms("nova", "mcgen")))
    more, _ = follow_all([old, live], tmp_path / "ckpt")
    assert [(e.type, e.stage) for e in more] == [("terminated", "mcgen")]
    assert more[0].ts == U("11:00:00")


def test_follower_dead_letters_past_the_age_bound_come_out_of_poll(tmp_path):
    log = write(tmp_path, [submitted("40.0", T("10:00:00"))] + two_jobs()[:2]
                + [submitted("41.0", T("13:00:00")), ad("41.0", T("13:00:00"), 0, **poms("n", "s"))])
    published, dead = follow_all([log], tmp_path / "ckpt", restart_every=1,
                                 routing=Routing(attrs=ATTRS, max_hold_s=600))
    assert [d.reason.split(" carrying")[0] for d in dead] == ["no JobAdInformation (028) event of job 40.0"]
    assert {e.job_id for e in published} == {"s1#10.0", "s1#41.0"}


def test_attribute_values_that_break_the_contract_are_dead_letters_and_numbers_are_names(tmp_path):
    log = write(tmp_path, [submitted("50.0", T("10:00:00")), ad("50.0", T("10:00:00"), 0, **poms("c" * 2000, "s")),
                           submitted("51.0", T("10:00:01")),
                           _hdr(28, "51.0", T("10:00:01")) + "Job ad information event triggered.\nProc = 0\n"
                           "POMS4_CAMPAIGN_NAME = 2024\nPOMS4_CAMPAIGN_STAGE_NAME = \"s[/x]\"\nCluster = 51\n"
                           "EventTypeNumber = 28\n...\n"])
    evs, stats, dead = run([log])
    assert [(e.job_id, e.campaign, e.stage) for e in evs] == [("s1#51.0", "2024", "s[/x]")]
    assert len(dead) == 1 and "the job's campaign attribute (POMS4_CAMPAIGN_NAME) is 2,000 characters" in dead[0].reason
    assert stats.dead_letters == 1
