"""What replay and verify tell the user: conflicts, repairs and refused files are said (and a file that
was not replayed is exit 1), and verify says how many jobs and files it checked row by row."""

from __future__ import annotations

import gzip
import json

from tests.builders import job
from tests.stagewatch.test_cli_escaping import flat, run_cli

T0 = 1497960000.0
GOOD = {"schema": "job-event/1", "event_id": "e1", "ts": T0, "campaign": "c", "stage": "s", "job_id": "1.0",
        "type": "submitted"}


def _write(path, *records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_replay_says_a_conflicting_copy_was_resolved_and_exits_0(capsys, tmp_path):
    other = dict(GOOD, submission="another")
    f = _write(tmp_path / "in.jsonl", GOOD, other)
    code, _, err = run_cli(capsys, "replay", "-q", "--store", f"chdb:{tmp_path / 'store'}", f)
    assert code == 0, err
    assert "1 conflicting copy of an event_id" in flat(err)


def test_replay_of_an_unreadable_file_names_it_and_exits_1_after_replaying_the_others(capsys, tmp_path):
    good = _write(tmp_path / "good.jsonl", GOOD)
    binary = tmp_path / "core.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    url = f"chdb:{tmp_path / 'store'}"
    code, _, err = run_cli(capsys, "replay", "-q", "--store", url, str(binary), good)
    assert code == 1, err
    assert "not replayed:" in err and "core.bin" in flat(err)
    code, out, err = run_cli(capsys, "status", "--store", url, "--format", "json")
    assert code == 0 and json.loads(out)["stages"][0]["jobs"] == 1


def test_replay_of_gzip_counts_like_plain(capsys, tmp_path):
    gz = tmp_path / "in.jsonl.gz"
    gz.write_bytes(gzip.compress((json.dumps(GOOD) + "\n").encode()))
    code, _, err = run_cli(capsys, "replay", "-q", "--store", f"chdb:{tmp_path / 'store'}", str(gz))
    assert code == 0 and "1 new events" in flat(err)


def test_verify_says_how_many_jobs_and_files_it_checked(capsys, tmp_path):
    url = f"chdb:{tmp_path / 'store'}"
    from stagewatch.replay import replay_events
    from stagewatch.store import open_store

    with open_store(url) as st:
        replay_events(st, [job("1.0", "submitted", T0), job("2.0", "submitted", T0 + 1)])
    code, _, err = run_cli(capsys, "verify", "--store", url)
    assert code == 0, err
    assert "1 stage(s), 2 job(s) and 0 file(s) checked" in flat(err)
    with open_store(url, create=False) as st:
        (row,) = st.query("SELECT * FROM job_state FINAL WHERE job_id = '2.0'")
        st.insert("job_state", [dict(row, restarts=7, version=row["version"] + 1)])
    code, _, err = run_cli(capsys, "verify", "--store", url)
    assert code == 1
    assert "verify failed" in err and "1 job/attempt/file row(s) differ" in flat(err)
