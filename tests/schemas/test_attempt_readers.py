"""Every SQL that reads job_attempts counts only the jobs' current attempts (static scan).

job_attempts rows are never deleted: a winning conflicting copy that takes a `started` away leaves the row of
an attempt that no longer exists (tests/stagewatch/test_stale_attempts.py shows it on both stores and both
write paths). The readers stay right only because each reads the table through
schemas.queries.current_attempts (rows up to job_state.attempts). This scan makes a new reader that reads the
table directly fail CI even where no scenario has a stale row: the SQL the CLI, every dashboard panel and alert
rule, and verify build, and every `FROM job_attempts` in the project's Python source.
"""

from __future__ import annotations

import re
from pathlib import Path

from schemas import queries as sq
from stagewatch import verify
from tests.schemas.test_queries_division import all_static_sql

ROOT = Path(__file__).resolve().parents[2]
GUARD = re.compile(
    r"FROM job_attempts FINAL\s+ALL INNER JOIN \(\s+SELECT campaign, stage, job_id, attempts AS job_attempts_now "
    r"FROM job_state FINAL WHERE (?:(?!\bFROM\b).)*?\) AS js USING \(campaign, stage, job_id\)\s+"
    r"WHERE (?:(?!\bFROM\b|\bUNION\b|\bSELECT\b).)*?\battempt <= job_attempts_now\b", re.DOTALL)
FROM_TABLE = re.compile(r"\bFROM\s+job_attempts\b", re.IGNORECASE)

#: Source lines allowed to read job_attempts directly: the guard itself, and verify's count of the rows it
#: leaves out (said in the report, never counted as attempts).
ALLOWED = {("schemas/queries.py", "current_attempts"), ("stagewatch/verify.py", "STALE_ATTEMPTS_SQL")}


def unguarded_reads(sql: str) -> int:
    """How many `FROM job_attempts` in `sql` are not the head of a current_attempts block."""
    return sum(1 for m in FROM_TABLE.finditer(sql) if not GUARD.match(sql, m.start()))


def test_the_scan_flags_a_direct_read_and_accepts_the_guard() -> None:
    assert unguarded_reads("SELECT attempt FROM job_attempts FINAL WHERE campaign = 'c'") == 1
    assert unguarded_reads("SELECT count() FROM (SELECT * FROM  job_attempts) AS a") == 1
    assert unguarded_reads(sq.current_attempts("attempt").format(where="1")) == 0
    assert unguarded_reads(sq.ATTEMPTS_SQL) == 0 and sq.ATTEMPTS_SQL.count("job_attempts ") == 1


def test_every_built_sql_reads_job_attempts_through_the_guard() -> None:
    built = list(all_static_sql())
    built += [("sites_sql", sq.sites_sql()), ("sites_sql c/s", sq.sites_sql("c", "s"))]
    built += [(f"verify {kind}", sql) for check in (verify._job_checks(sq.where("c", "s")),)
              for kind, sql, count_sql, _ in check for sql in (sql, count_sql)]
    readers = [name for name, sql in built if FROM_TABLE.search(sql)]
    assert len(readers) >= 6, readers  # attempts, sites, restarts panels, the job timeline, verify: not vacuous
    bad = [name for name, sql in built if unguarded_reads(sql)]
    assert bad == [], "read job_attempts through schemas.queries.current_attempts:\n" + "\n".join(bad)


def test_no_source_file_reads_job_attempts_directly() -> None:
    bad = []
    for folder in ("stagewatch", "schemas", "dashboards", "processors", "ingest", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            for m in FROM_TABLE.finditer(text):
                owner = _enclosing_definition(text, m.start())
                if (rel, owner) not in ALLOWED:
                    bad.append(f"{rel}: {owner}: {text[m.start():m.start() + 40]!r}")
    assert bad == [], "read job_attempts through schemas.queries.current_attempts:\n" + "\n".join(bad)


def _enclosing_definition(text: str, pos: int) -> str:
    """Name of the top-level def or assignment the position is in."""
    head = text[:pos]
    found = list(re.finditer(r"^(?:def\s+([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*(?::[^=\n]*)?=)", head, re.MULTILINE))
    if not found:
        return ""
    m = found[-1]
    return m.group(1) or m.group(2)
