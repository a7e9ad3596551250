"""A POMS-style PostgreSQL database: the schema POMS kept, a loader from stagewatch's state, and its overview.

What POMS (fermitools/poms) kept, from its DDL (``ddl/poms_ddl.sql``, ``ddl/ddl_change_2016_4.ddl``,
``ddl/ddl_change_2017_03_02.ddl``, renamed by ``ddl/great_renamer.sql``: campaigns -> campaign_stages,
tasks -> submissions, jobs.task_id -> submission_id), before jobs moved to fifemon:

* ``campaign_stages`` (one per stage, under a ``campaigns`` row in the later model),
* ``submissions`` (``tasks``: one per submission of a stage; ``idx_tasks`` on the stage id),
* ``jobs``: one row per job with a ``status`` text column and ``user_exe_exit_code`` (``idx_jobs_task_id``,
  ``idx_jobs_by_jobsub_job_id``),
* ``job_files (job_id, file_name, file_type in ('input', 'output', 'log'), created, declared)`` with
  primary key (job_id, file_name, file_type) and ``job_files_file_name_idx``: the files each job read
  and wrote, ``declared`` set when SAM knew the output.

Two additions, both needed to compare the same numbers and both named here: ``job_files.located`` (the
"located flag": POMS asked SAM whether an output had a location; here the answer is stored) and
``jobs.signal`` (stagewatch counts a job killed by a signal as failed even with exit code 0). POMS took a
stage's input dataset from SAM (``samweb count-files``); ``dataset_files`` holds that snapshot.

The overview is computed the way POMS's pages computed it: at page load, by joins and GROUP BY over
jobs and job_files (no precomputed counters). A file's link to its outputs is through the job that read
it, as in POMS: an input counts as located when the job that last had it (``file_state.disposition_job``)
wrote a located output naming it. The loader attaches each output to the jobs of its parents, so on one
file per job (the simulator's jobs) this equals stagewatch's parentage rule; ``compare`` checks it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from schemas.queries import where

SCHEMA = """
CREATE TABLE campaigns (
    campaign_id   serial PRIMARY KEY,
    name          text NOT NULL UNIQUE
);
CREATE TABLE campaign_stages (
    campaign_stage_id serial PRIMARY KEY,
    campaign_id   integer NOT NULL REFERENCES campaigns (campaign_id),
    name          text NOT NULL,
    dataset       text NOT NULL,
    completion_type text NOT NULL DEFAULT 'located',
    UNIQUE (campaign_id, name)
);
CREATE TABLE submissions (
    submission_id serial PRIMARY KEY,
    campaign_stage_id integer NOT NULL REFERENCES campaign_stages (campaign_stage_id),
    jobsub_job_id text NOT NULL,
    created       timestamptz NOT NULL
);
CREATE TABLE jobs (
    job_id        bigint PRIMARY KEY,
    submission_id integer NOT NULL,
    jobsub_job_id text NOT NULL,
    node_name     text NOT NULL,
    host_site     text NOT NULL,
    status        text NOT NULL,
    updated       timestamptz NOT NULL,
    user_exe_exit_code integer,
    signal        integer
);
CREATE TABLE job_files (
    job_id        bigint NOT NULL,
    file_name     text NOT NULL,
    file_type     text NOT NULL CHECK (file_type IN ('input', 'output', 'log')),
    created       timestamptz NOT NULL,
    declared      timestamptz,
    located       boolean NOT NULL DEFAULT false
);
CREATE TABLE dataset_files (
    campaign_stage_id integer NOT NULL,
    file_name     text NOT NULL
);
"""

# Declared after the load (as a restore would), the indexes POMS declared plus the keys.
INDEXES = """
ALTER TABLE jobs ADD CONSTRAINT fk_jobs FOREIGN KEY (submission_id) REFERENCES submissions (submission_id);
CREATE INDEX idx_submissions_campaign_stage_id ON submissions (campaign_stage_id);
CREATE INDEX idx_jobs_submission_id ON jobs (submission_id);
CREATE INDEX idx_jobs_by_jobsub_job_id ON jobs (jobsub_job_id);
ALTER TABLE job_files ADD CONSTRAINT pk_job_files PRIMARY KEY (job_id, file_name, file_type);
ALTER TABLE job_files ADD CONSTRAINT fk_job_files FOREIGN KEY (job_id) REFERENCES jobs (job_id);
CREATE INDEX job_files_file_name_idx ON job_files (file_name);
ALTER TABLE dataset_files ADD CONSTRAINT pk_dataset_files PRIMARY KEY (campaign_stage_id, file_name);
ANALYZE;
"""

STATUS_OF = {"idle": "Idle", "running": "Running", "held": "Held", "suspended": "Suspended",
             "completed": "Completed", "removed": "Removed"}

# The numbers both sides compute (the ones POMS's overview showed: jobs by status, files located).
COMPARED = ("jobs", "jobs_idle", "jobs_running", "jobs_held", "jobs_suspended", "jobs_completed", "jobs_removed",
            "jobs_completed_ok", "jobs_completed_failed", "input_files", "files_located",
            "files_declared_not_located", "files_without_located_output", "completion_pct")

OVERVIEW_SQL = """
WITH job_counts AS (
    SELECT s.campaign_stage_id,
           count(*) AS jobs,
           count(*) FILTER (WHERE j.status = 'Idle') AS jobs_idle,
           count(*) FILTER (WHERE j.status = 'Running') AS jobs_running,
           count(*) FILTER (WHERE j.status = 'Held') AS jobs_held,
           count(*) FILTER (WHERE j.status = 'Suspended') AS jobs_suspended,
           count(*) FILTER (WHERE j.status = 'Completed') AS jobs_completed,
           count(*) FILTER (WHERE j.status = 'Removed') AS jobs_removed,
           count(*) FILTER (WHERE j.status = 'Completed' AND j.user_exe_exit_code = 0
                            AND j.signal IS NULL) AS jobs_completed_ok
    FROM submissions s
    JOIN jobs j ON j.submission_id = s.submission_id
    GROUP BY s.campaign_stage_id
),
file_status AS (
    SELECT d.campaign_stage_id, d.file_name,
           coalesce(bool_or(o.located), false) AS located,
           count(o.file_name) > 0 AS declared
    FROM dataset_files d
    LEFT JOIN (job_files i
               JOIN jobs ij ON ij.job_id = i.job_id
               JOIN submissions isub ON isub.submission_id = ij.submission_id)
           ON i.file_name = d.file_name AND i.file_type = 'input'
              AND isub.campaign_stage_id = d.campaign_stage_id
    LEFT JOIN job_files o ON o.job_id = i.job_id AND o.file_type = 'output' AND o.declared IS NOT NULL
    GROUP BY d.campaign_stage_id, d.file_name
),
file_counts AS (
    SELECT campaign_stage_id,
           count(*) AS input_files,
           count(*) FILTER (WHERE located) AS files_located,
           count(*) FILTER (WHERE declared AND NOT located) AS files_declared_not_located
    FROM file_status
    GROUP BY campaign_stage_id
)
SELECT c.name AS campaign, cs.name AS stage,
       coalesce(jc.jobs, 0) AS jobs,
       coalesce(jc.jobs_idle, 0) AS jobs_idle,
       coalesce(jc.jobs_running, 0) AS jobs_running,
       coalesce(jc.jobs_held, 0) AS jobs_held,
       coalesce(jc.jobs_suspended, 0) AS jobs_suspended,
       coalesce(jc.jobs_completed, 0) AS jobs_completed,
       coalesce(jc.jobs_removed, 0) AS jobs_removed,
       coalesce(jc.jobs_completed_ok, 0) AS jobs_completed_ok,
       coalesce(jc.jobs_completed, 0) - coalesce(jc.jobs_completed_ok, 0) AS jobs_completed_failed,
       coalesce(fc.input_files, 0) AS input_files,
       coalesce(fc.files_located, 0) AS files_located,
       coalesce(fc.files_declared_not_located, 0) AS files_declared_not_located,
       coalesce(fc.input_files, 0) - coalesce(fc.files_located, 0) AS files_without_located_output,
       CASE WHEN coalesce(fc.input_files, 0) = 0 THEN 0.0
            ELSE ((2000 * fc.files_located + fc.input_files) / (2 * fc.input_files)) / 10.0 END AS completion_pct
FROM campaign_stages cs
JOIN campaigns c ON c.campaign_id = cs.campaign_id
LEFT JOIN job_counts jc ON jc.campaign_stage_id = cs.campaign_stage_id
LEFT JOIN file_counts fc ON fc.campaign_stage_id = cs.campaign_stage_id
ORDER BY c.name, cs.name
"""
"""POMS's overview at page load: every count by joins over jobs and job_files, nothing precomputed.
completion_pct is rounded half up to one decimal with integer arithmetic, as stagewatch's SQL does."""


def create_schema(conn: Any) -> None:
    conn.execute(SCHEMA)
    conn.commit()


def _ts(value: float | None) -> str | None:
    """A Unix time as an ISO timestamptz literal for COPY (text format)."""
    if value is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(float(value)))


def load_from_store(store: Any, conn: Any, *, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Copy stagewatch's current state (job_state, file_state) into the POMS-style tables, stage by stage.

    Reads through the store's SQL (chDB or a ClickHouse server) one stage at a time, so memory stays that
    of one stage; writes with COPY, then declares the indexes. Returns row counts per table.
    """
    stages = [(r["campaign"], r["stage"]) for r in
              store.query("SELECT DISTINCT campaign, stage FROM stage_numbers ORDER BY campaign, stage")]
    counts = dict.fromkeys(("campaign_stages", "submissions", "jobs", "job_files", "dataset_files"), 0)
    campaign_ids: dict[str, int] = {}
    next_job = 1
    next_sub = 1
    with conn.cursor() as cur:
        for n_stage, (campaign, stage) in enumerate(stages, 1):
            if campaign not in campaign_ids:
                campaign_ids[campaign] = cur.execute(
                    "INSERT INTO campaigns (name) VALUES (%s) RETURNING campaign_id", (campaign,)).fetchone()[0]
            cs_id = cur.execute(
                "INSERT INTO campaign_stages (campaign_id, name, dataset) VALUES (%s, %s, %s) "
                "RETURNING campaign_stage_id", (campaign_ids[campaign], stage, f"{campaign}_{stage}_input")).fetchone()[0]
            counts["campaign_stages"] += 1
            w = where(campaign, stage)
            jobs = store.query("SELECT job_id, state, submission, exit_code, signal, site, host, first_ts, last_ts "
                               f"FROM job_state FINAL WHERE {w}")
            subs: dict[str, int] = {}
            sub_created: dict[str, float] = {}
            for j in jobs:
                s = j["submission"]
                sub_created[s] = min(sub_created.get(s, j["first_ts"]), j["first_ts"])
            with cur.copy("COPY submissions (submission_id, campaign_stage_id, jobsub_job_id, created) FROM STDIN") as cp:
                for s, created in sorted(sub_created.items()):
                    subs[s] = next_sub
                    cp.write_row((next_sub, cs_id, s, _ts(created)))
                    next_sub += 1
            counts["submissions"] += len(subs)
            job_ids: dict[str, int] = {}
            with cur.copy("COPY jobs (job_id, submission_id, jobsub_job_id, node_name, host_site, status, updated, "
                          "user_exe_exit_code, signal) FROM STDIN") as cp:
                for j in jobs:
                    job_ids[j["job_id"]] = next_job
                    cp.write_row((next_job, subs[j["submission"]], j["job_id"], j["host"], j["site"],
                                  STATUS_OF[j["state"]], _ts(j["last_ts"]), j["exit_code"], j["signal"]))
                    next_job += 1
            counts["jobs"] += len(jobs)
            del jobs
            files = store.query("SELECT file, is_input, is_output, located, parents, disposition_job, first_ts, "
                                f"located_ts FROM file_state FINAL WHERE {w}")
            input_job: dict[str, int] = {}
            with cur.copy("COPY dataset_files (campaign_stage_id, file_name) FROM STDIN") as dcp:
                for f in files:
                    if f["is_input"]:
                        dcp.write_row((cs_id, f["file"]))
                        counts["dataset_files"] += 1
                        jid = job_ids.get(f["disposition_job"])
                        if jid is not None:
                            input_job[f["file"]] = jid
            with cur.copy("COPY job_files (job_id, file_name, file_type, created, declared, located) FROM STDIN") as cp:
                for name, jid in input_job.items():
                    cp.write_row((jid, name, "input", _ts(0.0), None, False))
                    counts["job_files"] += 1
                for f in files:
                    if not f["is_output"]:
                        continue
                    for jid in {input_job[p] for p in f["parents"] if p in input_job}:
                        cp.write_row((jid, f["file"], "output", _ts(f["first_ts"]), _ts(f["first_ts"]),
                                      bool(f["located"])))
                        counts["job_files"] += 1
            conn.commit()
            if progress is not None and (n_stage % 20 == 0 or n_stage == len(stages)):
                progress(f"POMS-style load: {n_stage}/{len(stages)} stages, {counts['jobs']:,} jobs, "
                         f"{counts['job_files']:,} job_files rows")
    conn.execute(INDEXES)
    conn.commit()
    return counts


def overview(conn: Any) -> list[dict[str, Any]]:
    """The overview by joins, as a POMS page computed it at load time."""
    with conn.cursor() as cur:
        cur.execute(OVERVIEW_SQL)
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


def compare(poms: Iterable[dict[str, Any]], status_stages: Iterable[dict[str, Any]]) -> list[str]:
    """Every difference between the POMS-style overview and stagewatch's status, as readable lines.

    Empty means both give the same numbers for the same stages.
    """
    ours = {(s["campaign"], s["stage"]): s for s in status_stages}
    theirs = {(r["campaign"], r["stage"]): r for r in poms}
    diffs = [f"{c}/{s}: only in stagewatch's status" for c, s in sorted(ours.keys() - theirs.keys())]
    diffs += [f"{c}/{s}: only in the POMS-style database" for c, s in sorted(theirs.keys() - ours.keys())]
    for key in sorted(ours.keys() & theirs.keys()):
        for name in COMPARED:
            a, b = ours[key][name], theirs[key][name]
            if float(a) != float(b):
                diffs.append(f"{key[0]}/{key[1]} {name}: stagewatch {a} != POMS-style {b}")
    return diffs
