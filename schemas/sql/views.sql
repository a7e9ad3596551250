-- Independent recomputation of every entity from raw_events alone, in SQL, for `stagewatch verify`
-- and for ad-hoc questions ("which jobs were restarted with no information?"). Nothing here reads
-- the state tables that the Python engine writes; verify compares the two.
-- {job_order}, {file_order}, {job_states}, {enders} are filled in from processors/ (the definitions
-- of tie order and state names), so the views follow the glossary. Runs on ClickHouse 18.16+.

DROP TABLE IF EXISTS v_job_recount;
CREATE VIEW v_job_recount AS
SELECT
    campaign, stage, entity AS job_id,
    arraySort(x -> (x.1, x.2, x.3),
              groupArray((ts, indexOf({job_order}, type), event_id, type, wall_s, cores, exit_code,
                          signal, cpu_user_s, cpu_sys_s, submission, site, host))) AS ev,
    arrayMap(x -> x.4, ev) AS types,
    arrayMap(x -> x.1, ev) AS tss,
    arrayMap(x -> x.5, ev) AS walls,
    arrayMap(x -> x.6, ev) AS coress,
    arrayMap(x -> x.7, ev) AS exits,
    arrayMap(x -> x.8, ev) AS signals,
    arrayMap(x -> x.9, ev) AS cpu_u,
    arrayMap(x -> x.10, ev) AS cpu_s,
    arrayMap(x -> x.11, ev) AS submissions,
    arrayMap(x -> x.12, ev) AS sites,
    arrayMap(x -> x.13, ev) AS hosts,
    arrayFilter(i -> types[i] = 'started', arrayEnumerate(types)) AS starts,
    if(length(arrayFilter(c -> isNotNull(c), coress)) = 0, toUInt16(1),
       assumeNotNull(arrayFilter(c -> isNotNull(c), coress)[1])) AS job_cores,
    length(types) AS events,
    transform(types[length(types)], {job_types}, {job_states}, '') AS state,
    length(starts) AS attempts,
    greatest(toInt64(length(starts)) - 1, 0) AS restarts,
    arrayMap(r -> arrayFirstIndex(j -> j > starts[r] AND j < starts[r + 1] AND has({enders}, types[j]),
                                  arrayEnumerate(types)),
             arrayEnumerate(arraySlice(starts, 2))) AS cause_idx,
    arrayMap(i -> if(i = 0, 'unknown', types[i]), cause_idx) AS causes,
    arrayCount(c -> c = 'evicted', causes) AS restarts_evicted,
    arrayCount(c -> c = 'shadow_exception', causes) AS restarts_shadow_exception,
    arrayCount(c -> c = 'reconnect_failed', causes) AS restarts_reconnect_failed,
    arrayCount(c -> c = 'held', causes) AS restarts_held,
    arrayCount(c -> c = 'unknown', causes) AS restarts_unknown,
    (state = 'completed' AND ifNull(exits[length(types)] = 0, 0) AND isNull(signals[length(types)])) AS completed_ok,
    arrayFilter(j -> types[j] = 'terminated' AND isNotNull(cpu_u[j]) AND isNotNull(cpu_s[j]) AND isNotNull(walls[j]),
                arrayEnumerate(types)) AS cpu_terms,
    length(cpu_terms) AS cpu_terminations,
    arraySum(arrayMap(j -> toInt64(round((assumeNotNull(cpu_u[j]) + assumeNotNull(cpu_s[j])) * 1000)), cpu_terms)) AS cpu_ms,
    arraySum(arrayMap(j -> toInt64(round(assumeNotNull(walls[j]) * assumeNotNull(coalesce(coress[j],
                 coress[arrayReduce('max', arrayFilter(p -> p < j, starts))], job_cores)) * 1000)), cpu_terms)) AS core_wall_ms,
    arraySum(arrayMap(r -> if(
        arrayExists(j -> j > starts[r] AND j < starts[r + 1] AND types[j] = 'terminated', arrayEnumerate(types)),
        toInt64(0),
        toInt64(round(
            if(cause_idx[r] > 0 AND isNotNull(walls[cause_idx[r]]), assumeNotNull(walls[cause_idx[r]]),
               tss[if(cause_idx[r] > 0, cause_idx[r], starts[r + 1])] - tss[starts[r]])
            * assumeNotNull(if(cause_idx[r] > 0, coalesce(coress[cause_idx[r]], coress[starts[r]], job_cores),
                                                 coalesce(coress[starts[r]], job_cores)))
            * 1000))),
        arrayEnumerate(arraySlice(starts, 2)))) AS badput_core_ms,
    tss[1] AS first_ts,
    tss[length(tss)] AS last_ts,
    arrayReduce('max', arrayFilter((t, ty) -> ty = 'terminated', tss, types)) AS progress_ts,
    has(types, 'terminated') AS has_progress,
    -- the columns of a job_state row that are not counters (verify compares whole rows):
    arrayFilter(x -> x != '', submissions)[1] AS first_submission,
    if(has(types, 'submitted'), toNullable(arrayFilter((t, ty) -> ty = 'submitted', tss, types)[1]), NULL) AS submitted_ts,
    if(has(types, 'terminated'), arrayFilter((e, ty) -> ty = 'terminated', exits, types)[-1], NULL) AS last_exit_code,
    if(has(types, 'terminated'), arrayFilter((g, ty) -> ty = 'terminated', signals, types)[-1], NULL) AS last_signal,
    if(length(starts) = 0, '', sites[starts[-1]]) AS last_site,
    if(length(starts) = 0, '', hosts[starts[-1]]) AS last_host
FROM raw_events FINAL
WHERE kind = 'job'
GROUP BY campaign, stage, entity;

DROP TABLE IF EXISTS v_file_recount;
CREATE VIEW v_file_recount AS
SELECT
    campaign, stage, file, events, is_input, is_output, located,
    multiIf(has_located_output = 1, 'files_located',
            has_declared_output = 1, 'files_declared_not_located',
            consumed = 1, 'files_consumed_no_output',
            disposition = 'delivered', 'files_in_flight',
            disposition IN ('failed', 'skipped'), 'files_failed',
            'files_pending') AS bucket,
    first_ts, last_ts, progress_ts, has_progress,
    -- the other columns of a file_state row (verify compares whole rows):
    consumed, disposition, disposition_job, deliveries, last_location, output_parents,
    if(located = 1, toNullable(located_at), NULL) AS located_ts,
    if(is_input = 1 AND has_located_output = 1, toNullable(input_located_at), NULL) AS input_located_ts,
    arraySort(output_list) AS outputs_of
FROM
(
    SELECT campaign, stage, entity AS file,
           count() AS events,
           countIf(type = 'input_declared') > 0 AS is_input,
           countIf(type = 'output_declared') > 0 AS is_output,
           countIf(type = 'output_located') > 0 AS located,
           countIf(type = 'consumed') > 0 AS consumed,
           argMaxIf(type, (ts, indexOf({file_order}, type), event_id),
                    type IN ('delivered', 'consumed', 'skipped', 'failed')) AS disposition,
           argMaxIf(job_id, (ts, indexOf({file_order}, type), event_id),
                    type IN ('delivered', 'consumed', 'skipped', 'failed')) AS disposition_job,
           countIf(type = 'delivered') AS deliveries,
           argMaxIf(location, (ts, indexOf({file_order}, type), event_id),
                    type = 'output_located' AND location != '') AS last_location,
           arraySort(groupUniqArrayArrayIf(parents, type = 'output_declared')) AS output_parents,
           minIf(ts, type = 'output_located') AS located_at,
           min(ts) AS first_ts,
           max(ts) AS last_ts,
           maxIf(ts, type = 'output_located') AS progress_ts,
           countIf(type = 'output_located') > 0 AS has_progress
    FROM raw_events FINAL
    WHERE kind = 'file'
    GROUP BY campaign, stage, entity
) AS own
ANY LEFT JOIN
(
    SELECT campaign, stage, parent AS file, max(output_located) AS has_located_output, 1 AS has_declared_output,
           groupUniqArray(output) AS output_list,
           -- processors.files.input_located_ts: the earliest over located outputs of the later of the
           -- output's first declaration naming this parent and its first location
           minIf(greatest(named_ts, output_located_at), output_located = 1) AS input_located_at
    FROM
    (
        SELECT campaign, stage, entity AS output, arrayJoin(parents) AS parent, min(ts) AS named_ts
        FROM raw_events FINAL
        WHERE kind = 'file' AND type = 'output_declared'
        GROUP BY campaign, stage, output, parent
    ) AS links
    ANY LEFT JOIN
    (
        SELECT campaign, stage, entity AS output, 1 AS output_located, min(ts) AS output_located_at
        FROM raw_events FINAL
        WHERE kind = 'file' AND type = 'output_located'
        GROUP BY campaign, stage, entity
    ) AS loc USING (campaign, stage, output)
    GROUP BY campaign, stage, parent
) AS outs USING (campaign, stage, file);
