"""A replacement of faust-streaming 0.15.3's consumer fetch loop (``Consumer._drain_messages``).

Drop this module when faust-streaming fixes both of the following upstream (check
``faust/transport/consumer.py``: ``_drain_messages`` and ``perform_seek``); the worker runs unchanged
with ``--no-fast-consumer``, which leaves the stock loop in place.

1. The race it closes (stock faust-streaming has it). After a rebalance, table recovery *resumes* the
   stream partitions and *then* seeks them back to their committed offsets (``perform_seek``). Records
   fetched in between, from the position the consumer had reached before the rebalance, can be
   delivered after the seek has reset the read offset: they move the read offset past the committed
   one, so the re-fetched messages in between are dropped as already read (and registered as an
   offset gap that a commit then skips). Seen here as a few lost file events when a second worker
   joined. The fix: every ``perform_seek`` bumps an epoch (before and after); records of a fetch that
   a seek overlapped are discarded and their partitions sought again (``_reseek``), so they are read
   afresh.

2. Its cost. The stock loop runs ``await wait_first(callback(message), suspend_flow.wait())`` for
   every message so that a rebalance can interrupt a delivery: two asyncio tasks per message, 70-100 us
   on a 2-core machine, which caps a worker near 10,000 messages/s before any work. This loop starts
   the delivery by hand; when it completes without waiting (nearly always) no task is made, and when it
   must wait it continues under exactly the stock ``wait_first``.

It applies only to the Faust version it was written against (``install_fast_consumer`` returns False
and changes nothing on any other).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("stagewatch.worker")

FAUST_VERSION = "0.15.3"

class _Resume:
    """An awaitable that finishes a coroutine which was started by hand and is suspended on ``first``.

    Lets the fetch loop run a delivery synchronously when it completes without waiting (no task), and
    hand it to ``wait_first`` (a task, cancellable by a rebalance) only when it does have to wait.
    Exceptions thrown in (cancellation) are delivered to the coroutine at its suspension point.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Any:
        coro, fut = self.coro, self.first
        while True:
            try:
                yield fut
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    fut = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    fut = coro.send(None)
                except StopIteration as stop:
                    return stop.value


def install_fast_consumer() -> bool:
    """Replace Faust 0.15.3's consumer fetch loop with one that does not spawn two tasks per message.

    The stock loop runs ``await wait_first(callback(message), suspend_flow.wait())`` for every message
    so that a rebalance can interrupt a delivery (two tasks per message). This version starts the
    delivery by hand; when it completes without waiting (the flow is running and the agent's queue has
    room: nearly always) no task is made at all, and when it has to wait it continues under exactly the
    stock ``wait_first``, so a rebalance still interrupts it. (Awaiting it directly instead deadlocks:
    a put into a full queue parked across a rebalance then waits for the flow to resume, which waits for
    table recovery, which waits for this loop.) Returns False (and changes nothing) on any other Faust
    version.

    It also closes a race that loses messages after a rebalance (stock Faust has it too): recovery
    resumes the stream partitions and *then* seeks them back to their committed offsets. Records
    fetched in between, from the position the consumer had reached before the rebalance, could be
    delivered after the seek had reset the read offset; they moved the read offset past the committed
    one, so the re-fetched messages in between were dropped as already read (and registered as an
    offset gap that a commit skips). Seen as a few lost file events when a second worker joined. Here
    every ``perform_seek`` bumps an epoch; records of a fetch that a seek overlapped are discarded and
    their partitions sought again (``_reseek``), so they are read afresh.
    """
    import faust
    from faust.transport.consumer import Consumer

    if getattr(Consumer, "_stagewatch_fast", False):
        return True
    if faust.__version__ != FAUST_VERSION:
        log.warning("worker.fast_consumer skipped=true faust_version=%s (written for 0.15.3)", faust.__version__)
        return False

    async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - runs inside Faust
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        from faust.transport.consumer import CONSUMER_FETCHING

        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set
        yield_every = 1000
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                epoch = self._stagewatch_seek_epoch  # records fetched from here on predate any later seek
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                stale_tps: set[Any] = set()
                if not self.should_stop:
                    async for tp, message in ait:
                        if stale_tps or self._stagewatch_seek_epoch != epoch:
                            stale_tps.add(tp)  # a seek ran while these were fetched or delivered: drop them
                            continue
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                coro = callback(message)
                                try:
                                    first = coro.send(None)
                                except StopIteration:
                                    pass  # delivered without waiting: the common case, no task needed
                                else:
                                    # The delivery must wait (full queue, flow being stopped): from here
                                    # on it is interruptible by a rebalance, as in the stock loop.
                                    await self.wait_first(_Resume(coro, first), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    if stale_tps:
                        await _reseek(self, stale_tps)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _reseek(self: Any, tps: set[Any]) -> None:  # pragma: no cover - runs inside Faust
        """Put partitions whose fetched records were dropped back where their unprocessed messages start.

        That is the committed offset; a partition with none (nothing committed yet, or 0, which
        aiokafka's seek_to_committed leaves alone) goes back to its beginning, as the worker's
        ``auto_offset_reset="earliest"`` would place it. Re-reading is harmless: every step is idempotent.
        """
        log.info("worker.fetch_discarded reason=seek_during_fetch partitions=%s action=seek_to_committed",
                 ",".join(sorted(f"{tp.topic}/{tp.partition}" for tp in tps)))
        try:
            await self.perform_seek()
            rewind = [tp for tp in tps if not self._committed_offset.get(tp)]
            if rewind:
                # an explicit seek, not seek_to_beginning: that leaves the position unset until a broker
                # answers, and Faust's livelock detector asserts on an unset position meanwhile
                earliest = await self.earliest_offsets(*rewind)
                for tp in rewind:
                    await self.seek(tp, earliest.get(tp) or 0)
                    self._read_offset[tp] = None
        except Exception as exc:  # a rebalance under way: it seeks to committed offsets itself
            log.warning("worker.reseek_failed error=%r", exc)

    perform_seek = Consumer.perform_seek

    async def _perform_seek(self: Any) -> None:  # pragma: no cover - runs inside Faust
        self._stagewatch_seek_epoch += 1
        try:
            await perform_seek(self)
        finally:
            self._stagewatch_seek_epoch += 1

    Consumer._stagewatch_seek_epoch = 0  # type: ignore[attr-defined]
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    Consumer._stagewatch_fast = True  # type: ignore[attr-defined]
    log.info("worker.fast_consumer installed=true faust_version=%s", faust.__version__)
    return True
