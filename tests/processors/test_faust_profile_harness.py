"""bench/worker_profile.py profiles the worker's real batch cycle: its steps give the Engine's numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ingest.simulator import PRESETS, simulate_many
from processors.engine import Engine
from schemas.events import JobEvent, encode_event, event_key

_spec = importlib.util.spec_from_file_location(
    "worker_profile", Path(__file__).resolve().parents[2] / "bench" / "worker_profile.py")
assert _spec is not None and _spec.loader is not None
worker_profile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker_profile)


def test_the_profiled_steps_count_what_the_engine_counts() -> None:
    """A profile of a harness that skipped work (links, contributions, stage entries) would mislead: the
    harness's stage numbers must be the embedded engine's, with batches small enough to split jobs' and
    files' events over many batches."""
    events = list(simulate_many(PRESETS["tiny"](), 3))
    messages = [("job" if isinstance(ev, JobEvent) else "file", event_key(ev), encode_event(ev)) for ev in events]
    run = worker_profile.StepsRun(partitions=4, batch=37)
    run.run(messages)
    engine = Engine()
    engine.apply_all(events)
    as_of = max(ev.ts for ev in events) + 3600
    assert run.aggregator.numbers(as_of) == engine.numbers(as_of)
    assert not run.links and not run.contributions and run.rows > 0
