-- stagewatch ClickHouse tables. Runs on ClickHouse 18.16 and on modern ClickHouse/chDB.
-- Current-state tables are ReplacingMergeTree(version): the newest row per key wins, so a batch
-- written twice changes nothing. Read them with FINAL (or argMax by version).

-- Every accepted event, one column per contract field: for ad-hoc SQL, for `verify`, and for rebuilding state.
CREATE TABLE IF NOT EXISTS raw_events (
    campaign String,
    stage String,
    kind String,            -- 'job' or 'file'
    entity String,          -- job_id for job events, file for file events
    event_id String,
    type String,
    ts Float64,             -- Unix seconds
    event_time DateTime MATERIALIZED toDateTime(toUInt32(ts)),
    submission String,
    job_id String,
    file String,
    exit_code Nullable(Int32),
    signal Nullable(Int32),
    cpu_user_s Nullable(Float64),
    cpu_sys_s Nullable(Float64),
    wall_s Nullable(Float64),
    cores Nullable(UInt16),
    reason String,
    site String,
    host String,
    hold_code Nullable(Int32),      -- HTCondor's HoldReasonCode (held events)
    hold_subcode Nullable(Int32),   -- HTCondor's HoldReasonSubCode
    parents Array(String),
    location String,
    source String,          -- the file or topic it came from
    ingested_ts Float64
) ENGINE = ReplacingMergeTree ORDER BY (campaign, stage, kind, entity, event_id);

-- One row per job: its current state (drill-down from stage to job).
CREATE TABLE IF NOT EXISTS job_state (
    campaign String,
    stage String,
    job_id String,
    state String,
    submission String,
    attempts UInt32,
    restarts UInt32,
    restarts_evicted UInt32,
    restarts_shadow_exception UInt32,
    restarts_reconnect_failed UInt32,
    restarts_held UInt32,
    restarts_unknown UInt32,
    exit_code Nullable(Int32),
    signal Nullable(Int32),
    completed_ok UInt8,
    cpu_terminations UInt32,
    cpu_ms UInt64,
    core_wall_ms UInt64,
    cpu_efficiency_pct Nullable(Float64),
    badput_core_ms UInt64,
    badput_core_hours Float64,
    first_ts Float64,
    last_ts Float64,
    submitted_ts Nullable(Float64),
    site String,
    host String,
    hold_reason String,             -- the current hold (state = 'held'): the latest held event's reason
    hold_code Nullable(Int32),
    hold_subcode Nullable(Int32),
    held_ts Nullable(Float64),      -- held since: the first of the trailing held events
    pre_start_cpu_terminations UInt32,  -- terminated events before the first started: site 'unknown'
    pre_start_cpu_ms UInt64,
    pre_start_core_wall_ms UInt64,
    events UInt32,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (campaign, stage, job_id);

-- One row per attempt of a job (drill-down from job to attempt). Rows are never deleted: a winning conflicting
-- copy that takes a `started` away leaves the vanished attempt's row behind, so rows with attempt greater than
-- job_state.attempts are stale; read this table through schemas.queries.current_attempts.
CREATE TABLE IF NOT EXISTS job_attempts (
    campaign String,
    stage String,
    job_id String,
    attempt UInt32,
    started_ts Float64,
    ended_ts Nullable(Float64),
    ended_by String,        -- terminated, evicted, shadow_exception, reconnect_failed, held, unknown; '' = open
    wall_s Nullable(Float64),
    cores UInt16,
    badput_core_ms UInt64,
    exit_code Nullable(Int32),
    signal Nullable(Int32),
    site String,
    host String,
    restart_cause String,   -- the cause of the restart that interrupted this attempt; '' = none did
    cpu_terminations UInt32,    -- terminated events of this attempt with CPU and wall: its site's CPU
    cpu_ms UInt64,
    core_wall_ms UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (campaign, stage, job_id, attempt);

-- One row per file of a stage (inputs carry their bucket; outputs their parents and location).
CREATE TABLE IF NOT EXISTS file_state (
    campaign String,
    stage String,
    file String,
    is_input UInt8,
    bucket String,          -- the glossary's bucket name for input files, '' otherwise
    is_output UInt8,
    located UInt8,
    location String,
    parents Array(String),
    outputs Array(String),
    consumed UInt8,
    disposition String,
    disposition_job String,
    deliveries UInt32,
    first_ts Float64,
    last_ts Float64,
    located_ts Nullable(Float64),
    input_located_ts Nullable(Float64),  -- an input's located time (processors.files.input_located_ts)
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (campaign, stage, file);

-- One row per stage: the integer counters behind every number (see schemas/queries.py).
CREATE TABLE IF NOT EXISTS stage_numbers (
    campaign String,
    stage String,
    input_files UInt64,
    files_located UInt64,
    files_declared_not_located UInt64,
    files_consumed_no_output UInt64,
    files_in_flight UInt64,
    files_failed UInt64,
    files_pending UInt64,
    outputs_declared UInt64,
    outputs_located UInt64,
    jobs UInt64,
    jobs_idle UInt64,
    jobs_running UInt64,
    jobs_held UInt64,
    jobs_suspended UInt64,
    jobs_completed UInt64,
    jobs_removed UInt64,
    jobs_completed_ok UInt64,
    jobs_completed_failed UInt64,
    job_attempts UInt64,
    restarts UInt64,
    restarts_evicted UInt64,
    restarts_shadow_exception UInt64,
    restarts_reconnect_failed UInt64,
    restarts_held UInt64,
    restarts_unknown UInt64,
    cpu_terminations UInt64,
    cpu_ms UInt64,
    core_wall_ms UInt64,
    badput_core_ms UInt64,
    events UInt64,
    first_event_ts Nullable(Float64),
    last_event_ts Nullable(Float64),
    last_progress_ts Nullable(Float64),
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (campaign, stage);

-- Input that did not satisfy the contract: kept with the reason, never silently dropped.
CREATE TABLE IF NOT EXISTS dead_letter (
    received_ts Float64,
    received_time DateTime MATERIALIZED toDateTime(toUInt32(received_ts)),
    source String,          -- file path or topic
    position String,        -- line number or partition/offset; 'blake2b:<digest of raw>' for a record without one,
                            -- '<line> blake2b:<digest>' for a line of stdin, 'conflicting copy <content digest>'
                            -- for a losing copy (wherever it was met: a re-run adds no row)
    reason String,
    raw String              -- the exact bytes: their text if UTF-8, else 'hex:' + hex; the bytes in SQL:
                            -- if(startsWith(raw, 'hex:'), unhex(substring(raw, 5)), raw)
) ENGINE = ReplacingMergeTree ORDER BY (source, position);  -- the same bad line seen twice is one record
