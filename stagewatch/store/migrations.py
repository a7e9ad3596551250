"""The store's schema version and the ordered steps that upgrade an older store (`stagewatch migrate`).

Why: a store outlives the stagewatch that wrote it. A store whose tables lack a column this version
reads would be misread (a missing column is an error at best, a default-filled answer at worst), so
every command checks the version first: a write command creates a new store at CURRENT_VERSION,
every command refuses an older store with a sentence naming `stagewatch migrate` and a newer store
with a sentence naming an upgrade of stagewatch. Only `stagewatch migrate` writes an upgrade.

The version lives in the table `schema_version` (one row per version reached; the store's version is
the largest). Version 1 is the tables of stagewatch before versions were recorded (a frozen copy is
tests/stagewatch/fixtures/tables_v1.sql): a store with stagewatch tables and no `schema_version`
rows is at version 1.

How to add a step (when you add a column or table to schemas/sql/tables.sql):

1. Change tables.sql as a new store should look (new stores are created from it directly).
2. Append a ``Step`` to STEPS below with ``version`` = the last step's version + 1 and the ops that
   turn a store of the previous version into that: ``AddColumn(table, column, type, after=...)``
   for a column (``after`` = the column it follows in tables.sql, so a migrated store's columns are in
   the same order as a new store's), ``Sql("CREATE TABLE IF NOT EXISTS ...")`` for a table (copy its
   DDL from tables.sql), ``Sql("INSERT INTO ... SELECT ...")`` to backfill from raw_events.
3. Every op must be safe to run twice (a migration killed halfway is run again from its step):
   AddColumn checks system.columns itself (ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS);
   a Sql op must be idempotent on its own (IF NOT EXISTS; backfills into a ReplacingMergeTree keyed
   so a second run writes the same rows). Every op runs on chDB and on ClickHouse 18.16.
4. tests/stagewatch/test_migrate.py compares a migrated version-1 store's columns with a new store's
   (on chDB and the 18.16 server): it fails until the step matches tables.sql.

Views (schemas/sql/views.sql) hold no data: `migrate` re-creates them after the steps, like every
write command does, so they need no step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:
    from stagewatch.store.base import Store

log = logging.getLogger("stagewatch.store.migrations")

VERSION_TABLE = "schema_version"
#: The tables before versions were recorded.
BASE_VERSION = 1
VERSION_TABLE_DDL = (f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version UInt32, applied_ts Float64, "
                     "applied_by String) ENGINE = ReplacingMergeTree ORDER BY version")
#: A table every stagewatch store has had since version 1: present without a version row -> version 1.
_SENTINEL_TABLE = "raw_events"


@dataclass(frozen=True)
class AddColumn:
    """ALTER TABLE ... ADD COLUMN, skipped when the column is already there."""

    table: str
    column: str
    type: str
    after: str | None = None

    def run(self, store: "Store") -> None:
        from schemas.queries import literal

        rows = store.query(f"SELECT count() AS n FROM system.columns WHERE database = currentDatabase() "
                           f"AND table = {literal(self.table)} AND name = {literal(self.column)}")
        if int(rows[0]["n"]):
            return
        after = f" AFTER {self.after}" if self.after else ""
        store.command(f"ALTER TABLE {self.table} ADD COLUMN {self.column} {self.type}{after}")

    def __str__(self) -> str:
        return f"add column {self.table}.{self.column} {self.type}"


@dataclass(frozen=True)
class Sql:
    """One idempotent statement (see the module doc)."""

    statement: str

    def run(self, store: "Store") -> None:
        store.command(self.statement)

    def __str__(self) -> str:
        return self.statement.split("(")[0].strip()[:80]


@dataclass(frozen=True)
class RewriteStateRows:
    """Write every stage's job, attempt, file and stage rows again from its stored raw events.

    Why: a new derived column (e.g. file_state.input_located_ts) has no value in rows written before it;
    the raw events hold everything, and the Engine derives every row from them exactly as a replay does.
    One stage at a time (memory is bounded by the largest stage). Every rewritten row gets a version above
    the stored row's (StageState.track_versions), so the new row is the one read (tests/stagewatch/
    test_migrate.py checks it on chDB and on ClickHouse 18.16). Safe to run twice: the second run writes
    the same rows again, with higher versions.
    """

    why: str

    def run(self, store: "Store") -> None:
        from processors.engine import Engine
        from stagewatch.replay import stored_versions
        from stagewatch.sink import StoreSink

        keys = [(r["campaign"], r["stage"]) for r in
                store.query("SELECT DISTINCT campaign, stage FROM raw_events ORDER BY campaign, stage")]
        for i, key in enumerate(keys, 1):
            engine = Engine()
            for ev in store.load_events([key]):
                engine.apply(ev)
            engine.take_conflicts()  # resolved again the same way; recorded when they first arrived
            engine.stage(*key).track_versions(stored_versions(store, key))
            sink = StoreSink(store)
            sink.add_dirty(engine)
            rows = sink.flush()
            log.info("store.rows_rewritten campaign=%s stage=%s rows=%d stage_n=%d of=%d", key[0], key[1], rows,
                     i, len(keys))

    def __str__(self) -> str:
        return f"rewrite every state row from the raw events ({self.why})"


Op = Union[AddColumn, Sql, RewriteStateRows]


@dataclass(frozen=True)
class Step:
    """Upgrade a store from ``version - 1`` to ``version``."""

    version: int
    why: str
    ops: tuple[Op, ...]


STEPS: tuple[Step, ...] = (
    Step(2, "the store records its schema version", (Sql(VERSION_TABLE_DDL),)),
    Step(3, "holds (reason, HTCondor codes, held since) and per-site CPU and restarts (`stagewatch holds`, `sites`)", (
        AddColumn("raw_events", "hold_code", "Nullable(Int32)", after="host"),
        AddColumn("raw_events", "hold_subcode", "Nullable(Int32)", after="hold_code"),
        AddColumn("job_state", "hold_reason", "String", after="host"),
        AddColumn("job_state", "hold_code", "Nullable(Int32)", after="hold_reason"),
        AddColumn("job_state", "hold_subcode", "Nullable(Int32)", after="hold_code"),
        AddColumn("job_state", "held_ts", "Nullable(Float64)", after="hold_subcode"),
        AddColumn("job_state", "pre_start_cpu_terminations", "UInt32", after="held_ts"),
        AddColumn("job_state", "pre_start_cpu_ms", "UInt64", after="pre_start_cpu_terminations"),
        AddColumn("job_state", "pre_start_core_wall_ms", "UInt64", after="pre_start_cpu_ms"),
        AddColumn("job_attempts", "restart_cause", "String", after="host"),
        AddColumn("job_attempts", "cpu_terminations", "UInt32", after="restart_cause"),
        AddColumn("job_attempts", "cpu_ms", "UInt64", after="cpu_terminations"),
        AddColumn("job_attempts", "core_wall_ms", "UInt64", after="cpu_ms"),
        # rows written before this step hold no hold or per-site facts: step 4 rewrites them
    )),
    Step(4, "each input file's located time precomputed for the forecast (`status` ETA, located/h)", (
        AddColumn("file_state", "input_located_ts", "Nullable(Float64)", after="located_ts"),
        RewriteStateRows("input_located_ts, and the hold and per-site facts of rows written before step 3"),
    )),
)

CURRENT_VERSION = STEPS[-1].version if STEPS else BASE_VERSION


def _check_registry() -> None:
    expected = BASE_VERSION + 1
    for step in STEPS:
        if step.version != expected:
            raise RuntimeError(f"migration steps out of order: step {step.version} where {expected} was expected")
        expected += 1


_check_registry()


def stored_version(store: "Store") -> int | None:
    """The store's schema version; None when it has no stagewatch tables yet (a new store)."""
    names = {r["name"] for r in store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        f"AND name IN ('{VERSION_TABLE}', '{_SENTINEL_TABLE}')")}
    if VERSION_TABLE in names:
        v = int(store.query(f"SELECT max(version) AS v FROM {VERSION_TABLE}")[0]["v"] or 0)
        if v:
            return v
    # no version row: an old store (version 1), or a new one whose creation stopped before its first table
    return BASE_VERSION if _SENTINEL_TABLE in names else None


def _record(store: "Store", version: int) -> None:
    from importlib.metadata import PackageNotFoundError, version as pkg_version

    try:
        by = f"stagewatch {pkg_version('stagewatch')}"
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        by = "stagewatch"
    store.insert(VERSION_TABLE, [[version, time.time(), by]], ("version", "applied_ts", "applied_by"))


def mismatch_error(store: "Store", version: int) -> Exception:
    """The sentence for a store of another version (a StoreError)."""
    from stagewatch.store.base import StoreError

    where = getattr(store, "url", "the store")
    if version < CURRENT_VERSION:
        return StoreError(f"The store {where} has schema version {version}, older than this stagewatch's "
                          f"{CURRENT_VERSION}: upgrade it with `stagewatch migrate --store {where}` (back it up first "
                          "if an older stagewatch must still read it), then run this command again.")
    return StoreError(f"The store {where} has schema version {version}, written by a newer stagewatch (this one "
                      f"knows versions up to {CURRENT_VERSION}): upgrade stagewatch (`pip install -U stagewatch`) "
                      "to use it; nothing was changed.")


def check(store: "Store") -> int | None:
    """Raise unless the store is at CURRENT_VERSION (None: no stagewatch tables yet); reads only."""
    v = stored_version(store)
    if v is not None and v != CURRENT_VERSION:
        raise mismatch_error(store, v)
    return v


def create_or_check(store: "Store", apply_ddl: Callable[[], None]) -> None:
    """A write command's schema: a new store is created at CURRENT_VERSION (version row first, so a creation
    interrupted after it is completed by the next write, never taken for an old store); an existing store
    must be at CURRENT_VERSION."""
    v = check(store)
    if v is None:
        store.command(VERSION_TABLE_DDL)
        _record(store, CURRENT_VERSION)
        log.info("store.schema_created url=%s version=%d", getattr(store, "url", "?"), CURRENT_VERSION)
    apply_ddl()


@dataclass
class MigrationResult:
    before: int
    after: int
    steps: list[Step]


def migrate(store: "Store", apply_ddl: Callable[[], None],
            on_step: Callable[[Step], None] | None = None) -> MigrationResult:
    """Run every step from the store's version to CURRENT_VERSION, recording each; re-create the views."""
    from stagewatch.store.base import StoreError

    v = stored_version(store)
    where = getattr(store, "url", "the store")
    if v is None:
        raise StoreError(f"{where} holds no stagewatch tables: there is nothing to migrate (a write command such as "
                         "`stagewatch replay FILE` creates a new store at the current version).")
    if v > CURRENT_VERSION:
        raise mismatch_error(store, v)
    done: list[Step] = []
    for step in STEPS:
        if step.version <= v:
            continue
        if on_step is not None:
            on_step(step)
        t0 = time.perf_counter()
        for op in step.ops:
            op.run(store)
        _record(store, step.version)
        log.info("store.migrated url=%s version=%d why=%s seconds=%.2f", where, step.version, step.why,
                 time.perf_counter() - t0)
        done.append(step)
    apply_ddl()  # new tables of tables.sql (IF NOT EXISTS) and the views, as every write command does
    return MigrationResult(v, CURRENT_VERSION, done)
