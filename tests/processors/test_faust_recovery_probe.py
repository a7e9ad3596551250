"""The worker's probe of Faust's recovery, and its stall report, on a real (unstarted) Faust app."""

from __future__ import annotations

import logging
import types

import faust
import pytest
from faust.types import TP

from processors.faust import StreamWorker
from processors.recovery_watchdog import RESTART_EXIT


@pytest.fixture
def worker_like() -> types.SimpleNamespace:
    app = faust.App("probe-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.Table("t", partitions=2)
    return types.SimpleNamespace(app=app)


def test_probe_reads_recovery_state_and_its_progress(worker_like: types.SimpleNamespace) -> None:
    probe = StreamWorker._recovery_probe
    assert probe(worker_like).in_recovery is False
    rec = worker_like.app.tables.recovery
    rec._set_recovery_started()
    tp = TP("probe-test-t-changelog", 1)
    rec.active_highwaters[tp] = 9
    rec.active_offsets[tp] = 5
    first = probe(worker_like)
    assert first.in_recovery is True
    rec.active_offsets[tp] = 6
    assert probe(worker_like).progress != first.progress   # an applied record is progress
    rec._set_recovery_ended()
    assert probe(worker_like).in_recovery is False


def test_stall_report_names_the_stuck_partitions_and_exits_for_a_restart(
        worker_like: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rec = worker_like.app.tables.recovery
    rec._set_recovery_started()
    stuck, done = TP("probe-test-t-changelog", 0), TP("probe-test-t-changelog", 1)
    rec.active_highwaters.update({stuck: 40, done: 7})
    rec.active_offsets.update({stuck: 12, done: 7})

    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr("processors.faust.config.os._exit", exit_)
    with caplog.at_level(logging.INFO, logger="stagewatch.worker"), pytest.raises(SystemExit) as ex:
        StreamWorker._on_recovery_stalled(worker_like, 31.0)
    assert ex.value.code == RESTART_EXIT
    text = caplog.text
    assert "worker.recovery_stalled_partition topic=probe-test-t-changelog partition=0 applied_offset=12 " \
           "highwater=40" in text
    assert "partition=1" not in text            # caught up: not reported
    assert "diagnostics_failed" not in text
    assert "worker.restart reason=recovery_stalled seconds=31" in text
