"""`missing-files`: plain, json and samweb (SAM dimensions selecting exactly those files, chunked to
samweb_client's GET limit), and `--by submission` (the submission that last had each file)."""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from stagewatch.reading import read_last_submissions
from stagewatch.replay import replay_events
from stagewatch.samweb_dims import DEFAULT_MAX_CHARS, PREFIX, dims_strings, quote
from stagewatch.store import open_store
from tests.builders import file, job
from tests.stagewatch.test_cli_escaping import flat, run_cli

T0 = 1497960000.0
SEL = ["--campaign", "camp", "--stage", "stage1"]


def parse_dims(s: str) -> list[str]:
    """The file names a `file_name a, 'b c', ...` string selects (the grammar dims_strings writes)."""
    assert s.startswith(PREFIX)
    names = re.findall(r"'([^']*)'|([^,\s][^,]*?)(?=, |$)", s[len(PREFIX):])
    return [q or p for q, p in names]


def test_dims_select_exactly_the_files_in_chunks():
    names = [f"fd_cry_fhc_all_r{r:08d}_s{s:02d}.artdaq.root" for r in range(100) for s in range(3)]
    dims = dims_strings(names)
    assert len(dims.strings) > 1 and not dims.unselectable
    assert all(len(s) <= DEFAULT_MAX_CHARS for s in dims.strings)
    got = [n for s in dims.strings for n in parse_dims(s)]
    assert sorted(got) == sorted(names) and len(got) == len(set(got))


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.text(min_size=1, max_size=60), max_size=60), hs.integers(min_value=40, max_value=400))
def test_dims_never_select_a_wrong_file(names, limit):
    dims = dims_strings(names, limit)
    selectable = [n for n in set(names) if quote(n) is not None]
    got = [n for s in dims.strings for n in parse_dims(s)]
    assert sorted(got) == sorted(selectable)
    assert sorted(dims.unselectable) == sorted(set(names) - set(selectable))
    for s in dims.strings:  # over the limit only when one name alone is longer
        assert len(s) <= limit or len(parse_dims(s)) == 1


def test_quote_plain_quoted_and_refused():
    assert quote("a_b-1.root") == "a_b-1.root"
    assert quote("a b,c") == "'a b,c'"
    for bad in ("it's", 'a"b', "a%", "a*", "a\\b", "a\nb", " a", ""):
        assert quote(bad) is None


def recovery_store(tmp_path) -> str:
    """Five input files: a located; b failed in sub 2 after sub 1; c delivered in sub 1 only; d pending;
    e's last event names only its job (submission from the job's own events)."""
    url = f"chdb:{tmp_path / 'store'}"
    ev = [file(n, "input_declared", T0) for n in "abcde"]
    ev += [file("a", "delivered", T0 + 10, submission="1", job_id="j1"),
           file("out_a", "output_declared", T0 + 20, parents=["a"], job_id="j1", submission="1"),
           file("out_a", "output_located", T0 + 30, location="dcache:/x"),
           file("b", "delivered", T0 + 10, submission="1", job_id="j1"),
           file("b", "failed", T0 + 20, submission="1", job_id="j1"),
           file("b", "delivered", T0 + 100, submission="2", job_id="j2"),
           file("b", "failed", T0 + 100, submission="2", job_id="j2"),  # same ts: failed is later in type order
           file("c", "delivered", T0 + 10, submission="1", job_id="j1"),
           file("e", "delivered", T0 + 50, job_id="j3"),
           job("j3", "submitted", T0 + 40, submission="3")]
    random.Random(4).shuffle(ev)
    with open_store(url) as st:
        replay_events(st, ev + ev[:5])  # order and duplicates change nothing
    return url


def test_plain_json_and_samweb(capsys, tmp_path):
    url = recovery_store(tmp_path)
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url)
    assert code == 0, err
    assert out.split() == ["b", "c", "d", "e"]
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--format", "json")
    doc = json.loads(out)
    assert doc["files"] == ["b", "c", "d", "e"] and doc["count"] == 4
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--format", "samweb")
    assert code == 0, err
    assert out == "file_name b, c, d, e\n"
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--format", "samweb",
                             "--max-chars", "32")
    assert out.splitlines() == ["file_name b, c, d, e"]  # fits in 32
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--format", "smaweb")
    assert code == 2


def test_by_submission_groups_by_the_last_submission(capsys, tmp_path):
    url = recovery_store(tmp_path)
    with open_store(url, create=False) as st:
        assert read_last_submissions(st, "camp", "stage1") == {"a": "1", "b": "2", "c": "1", "e": "3"}
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--by", "submission")
    assert code == 0, err
    assert out.splitlines() == ["# submission 1: 1 file(s)", "c", "# submission 2: 1 file(s)", "b",
                                "# submission 3: 1 file(s)", "e", "# submission -: 1 file(s)", "d"]
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--by", "submission", "--format", "json")
    doc = json.loads(out)
    assert [(g["submission"], g["files"]) for g in doc["submissions"]] == [
        ("1", ["c"]), ("2", ["b"]), ("3", ["e"]), (None, ["d"])]
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--by", "submission",
                             "--format", "samweb")
    assert "# submission 2: 1 file(s)\nfile_name b\n" in out


def test_names_samweb_cannot_carry_are_said_not_dropped(capsys, tmp_path):
    url = f"chdb:{tmp_path / 'store'}"
    with open_store(url) as st:
        replay_events(st, [file("ok.root", "input_declared", T0), file("it's.root", "input_declared", T0)])
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--format", "samweb")
    assert code == 1
    assert out == "file_name ok.root\n"
    assert "it's.root" in flat(err) and "--format plain" in flat(err)


def test_missing_files_at_a_moment(capsys, tmp_path):
    url = recovery_store(tmp_path)
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--at", str(T0 + 25))
    assert code == 0, err
    assert out.split() == ["a", "b", "c", "d", "e"]  # a's output was located at T0 + 30


@pytest.mark.servers
def test_last_submissions_on_the_server(clickhouse_server, tmp_path):
    url = recovery_store(tmp_path)
    with open_store(url, create=False) as st:
        rows = st.query("SELECT * FROM raw_events")
    with open_store(clickhouse_server.store_url) as srv:
        for t in ("raw_events", "job_state", "job_attempts", "file_state", "stage_numbers", "dead_letter"):
            srv.command(f"TRUNCATE TABLE IF EXISTS {t}")
        from processors.rows import event_from_raw_row

        replay_events(srv, [event_from_raw_row(r) for r in rows])
        assert read_last_submissions(srv, "camp", "stage1") == {"a": "1", "b": "2", "c": "1", "e": "3"}


def test_a_hostile_submission_name_stays_on_its_header_line(capsys, tmp_path):
    url = f"chdb:{tmp_path / 'store'}"
    with open_store(url) as st:
        replay_events(st, [file("x.root", "input_declared", T0),
                           file("x.root", "delivered", T0 + 1, submission="evil\nfile_name all", job_id="j")])
    code, out, err = run_cli(capsys, "missing-files", *SEL, "--store", url, "--by", "submission", "--format", "samweb")
    assert code == 0, err
    assert out.splitlines() == ["# submission evil\\nfile_name all: 1 file(s)", "file_name x.root"]
