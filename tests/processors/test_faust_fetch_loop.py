"""The worker's Faust fetch loop around a seek to committed offsets (the race that lost messages).

Faust resumes the stream partitions and then seeks them back to their committed offsets. A fetch in
between returns records from the old position; delivered after the seek, they used to move the read
offset past the re-fetched messages, which were then dropped as already read. These tests drive the
installed loop (``install_fast_consumer``) with a scripted consumer: no Kafka, exact interleavings.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest
from faust.types import TP as FaustTP

from processors.faust import install_fast_consumer

TP = FaustTP("events", 0)


class Msg:
    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.topic = TP[0]


class ScriptedConsumer:
    """Just what the fetch loop touches; `batches` are what successive fetches return."""

    def __init__(self, batches: list[list[int]], committed: int | None, seek_during: int | None) -> None:
        self.batches = list(batches)
        self.committed = committed  # None: nothing committed yet (the seek leaves the position alone)
        self._committed_offset: dict[Any, int | None] = {}
        self.rewound: list[Any] = []
        self.seek_during = seek_during  # deliver this offset -> Faust's recovery seeks meanwhile
        self.delivered: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.seeks = 0
        self._stagewatch_seek_epoch = 0
        self._read_offset: dict[Any, int | None] = {TP: None}
        self._stopped = asyncio.Event()
        self._commit_every = None
        self._n_acked = 0
        self.should_stop = False
        self.suspend_flow = asyncio.Event()
        self.diag = types.SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
        self.app = types.SimpleNamespace(topics=types.SimpleNamespace(acks_enabled_for=lambda t: True))
        self.transport = types.SimpleNamespace(app=types.SimpleNamespace(should_stop=False))
        self.consumer_stopped_errors = ()
        self.log = types.SimpleNamespace(info=print, exception=print)

    def seek_to_committed(self) -> None:
        """What Faust's perform_seek does (with the epoch bumps the worker adds around it)."""
        self._stagewatch_seek_epoch += 2
        self.seeks += 1
        self._read_offset[TP] = self.committed
        self._committed_offset[TP] = self.committed
        if self.committed is not None:
            self._position(self.committed)

    def _position(self, offset: int) -> None:
        """The next fetch starts at `offset`."""
        if not self.batches or self.batches[0][0] != offset:
            self.batches.insert(0, list(range(offset, offset + 3)))

    async def earliest_offsets(self, *tps: Any) -> dict[Any, int]:
        return {tp: 0 for tp in tps}

    async def seek(self, tp: Any, offset: int) -> None:
        self.rewound.append((tp, offset))
        self._read_offset[tp] = offset or None
        self._position(offset)

    async def perform_seek(self) -> None:
        self.seek_to_committed()

    async def callback(self, msg: Msg) -> None:
        self.delivered.append(msg.offset)
        if msg.offset == self.seek_during:
            self.seek_during = None
            self.seek_to_committed()   # the recovery's seek completes while this fetch is delivered

    async def getmany(self, timeout: float) -> Any:
        if not self.batches:
            self._stopped.set()
            return
        for off in self.batches.pop(0):
            yield TP, Msg(off)

    async def sleep(self, s: float) -> None:
        await asyncio.sleep(s)

    async def wait_first(self, *coros: Any) -> None:  # pragma: no cover - deliveries here never wait
        raise AssertionError("a delivery waited")

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        self.gaps.append((start, end))

    async def commit(self) -> None:  # pragma: no cover
        pass


def run_loop(c: ScriptedConsumer) -> None:
    from faust.transport.consumer import Consumer

    fetcher = types.SimpleNamespace(_stopped=asyncio.Event())
    asyncio.run(asyncio.wait_for(Consumer._drain_messages(c, fetcher), 10))


@pytest.fixture(autouse=True)
def fast_loop() -> None:
    if not install_fast_consumer():
        pytest.skip("the fast consumer applies to faust-streaming 0.15.3 only")


def test_records_fetched_before_a_seek_are_not_delivered_after_it_and_nothing_is_skipped() -> None:
    # position 300 before the rebalance; committed 151; the seek lands while 300 is being delivered
    c = ScriptedConsumer([[300, 301, 302]], committed=151, seek_during=300)
    run_loop(c)
    assert c.delivered == [300, 151, 152, 153]   # 301, 302 discarded; 151.. read afresh
    assert c.gaps == []                           # no offset range marked as done without being read
    assert c.seeks == 2                           # the recovery's seek, then the loop's own re-seek


def test_without_a_seek_every_record_is_delivered_in_order() -> None:
    c = ScriptedConsumer([[5, 6, 7], [8, 9]], committed=5, seek_during=None)
    run_loop(c)
    assert c.delivered == [5, 6, 7, 8, 9]
    assert c.gaps == [] and c.seeks == 0


def test_a_partition_without_committed_offset_is_rewound_to_its_beginning() -> None:
    # a new group: nothing committed, so the seek leaves the position where the stale fetch left it
    c = ScriptedConsumer([[40, 41, 42]], committed=None, seek_during=40)
    run_loop(c)
    assert c.delivered == [40, 0, 1, 2]      # read afresh from the start, as auto_offset_reset=earliest
    assert c.rewound == [(TP, 0)] and c.gaps == []
