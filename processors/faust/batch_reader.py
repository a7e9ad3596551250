"""Batches of Kafka messages for the agents, read from their channels' queues in bulk.

Faust's per-message stream machinery (``Stream.__aiter__`` / ``take()``) costs tens of microseconds per
message; the agents here read their channel's queue directly, with the same generation, flow-control
and ack-tracking rules as ``Stream.take_events``, and the topics hand over raw bytes (the worker
decodes and validates values itself with msgspec).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Iterable

log = logging.getLogger("stagewatch.worker")


def raw_topic_class() -> type:
    """A faust Topic whose messages reach the agent as bytes, without a codec lookup per message.

    The worker decodes (and validates) message values itself with msgspec; Faust's serializer
    machinery (``raw`` codec included) costs several microseconds per message for nothing (a profiled
    worker spent 13% of its event loop in ``Schema.decode`` on nova-talk).

    Faust's ``Topic.__init__`` assigns ``self.decode`` (``_compile_decode``), an instance attribute that
    hides any ``decode`` method of a subclass: the override must be ``_compile_decode`` itself.
    """
    import faust
    from faust.events import Event

    class RawTopic(faust.Topic):  # type: ignore[misc]
        def _compile_decode(self) -> None:
            app = self.app

            async def decode(message: Any, *, propagate: bool = False) -> Any:
                return Event(app, message.key, message.value, message.headers, message)

            self.decode = decode

    return RawTopic


class BatchReader:
    """Batches of events from an agent's channel, read from its queue in bulk.

    Mirrors what ``Stream.take_events`` guarantees: events of an older consumer generation (from
    before a rebalance) or arriving while the flow is stopped are dropped, not processed; every
    taken message is tracked, so a rebalance or shutdown waits until it is acked; and nothing is
    acked here - the caller acks a batch after its effects are durable (``ack``).
    """

    def __init__(self, app: Any, stream: Any, max_n: int, within_s: float) -> None:
        self.app = app
        self.channel = aiter(stream.channel)  # registers the iterator with the conductor
        self.queue = self.channel.queue
        self.max_n = max_n
        self.within_s = within_s
        self.skipped = 0

    async def next_batch(self) -> list[Any] | None:
        """The next non-empty batch, or None when Faust stops the channel (worker shutdown).

        On shutdown Faust throws StopAsyncIteration into the channel; messages collected but not yet
        returned are neither tracked nor acked, so they are simply read again after a restart.
        """
        q = self.queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch = [await q.get()]
                deadline = loop.time() + self.within_s
                while len(batch) < self.max_n:
                    while not q.empty() and len(batch) < self.max_n:
                        batch.append(q.get_nowait())
                    remaining = deadline - loop.time()
                    if len(batch) >= self.max_n or remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(q.get(), remaining))
                    except asyncio.TimeoutError:
                        break
                kept = self._filter(batch)
                if kept:
                    return kept
        except StopAsyncIteration:
            return None

    def _filter(self, batch: list[Any]) -> list[Any]:
        app = self.app
        gen = app.consumer_generation_id
        active = app.flow_control.is_active()
        unacked_add = app.consumer._unacked_messages.add
        kept = []
        for ev in batch:
            msg = ev.message
            if not active or msg.generation_id != gen:
                self.skipped += 1  # a pre-rebalance delivery: its partition is re-read from the commit
                continue
            if not msg.tracked:
                msg.tracked = True
                unacked_add(msg)  # Consumer.track_message without its per-message sensor calls
            kept.append(ev)
        if len(kept) != len(batch):
            log.info("worker.batch_skipped stale_events=%d generation=%s flow_active=%s",
                     len(batch) - len(kept), gen, active)
        return kept

    @staticmethod
    def ack(batch: Iterable[Any]) -> None:
        for ev in batch:
            ev.ack()

    async def __aiter__(self) -> AsyncIterator[list[Any]]:  # pragma: no cover - convenience
        while (batch := await self.next_batch()) is not None:
            yield batch
