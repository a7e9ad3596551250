"""``stagewatch sam poll``: a stage's SAM definition, projects, outputs and locations -> file events.

Outputs like ``convert``/``tail``: ``--out FILE`` (JSON lines, appended and fsynced per poll),
``--store URL`` (counted into a store, as ``replay`` does) or ``--kafka HOST:PORT`` (published; the
default when neither of the others is given and $STAGEWATCH_KAFKA is set). The writers here
(``open_writer``) are shared with ``stagewatch follow``: each has ``event``, ``reject`` and ``flush``
(the interface of ``ingest.publish.Publisher``), and the checkpoint moves only after ``flush`` returned.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from stagewatch.console import esc

err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("stagewatch.sam")

KAFKA_ENV = "STAGEWATCH_KAFKA"
sam_app = typer.Typer(no_args_is_help=True, help="Read SAM (datasets, projects, lineage, locations) as file events.")


def _user_error(message: str) -> Exception:
    from stagewatch.cli import UserError

    return UserError(message)


# ------------------------------------------------------------------------------------------ writers
class FileWriter:
    """JSON lines appended to a file; ``flush`` fsyncs. A torn last line (a crash mid-write) is cut on open:
    the events it held are still pending in the checkpoint and are written again whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dead_letters = 0
        self._fh: Any = None  # opened at the first write: a run that fails before it leaves no file

    @property
    def fh(self) -> Any:
        if self._fh is None:
            try:
                self._fh = open(self.path, "ab+")
                self._cut_torn_tail()
            except OSError as exc:
                raise _user_error(f"Cannot write {self.path}: {exc.strerror or exc}; pass --out with a path you "
                                  "can write.") from None
        return self._fh

    def _cut_torn_tail(self) -> None:
        fh = self.fh
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        back = min(size, 1 << 20)
        fh.seek(size - back)
        tail = fh.read(back)
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - back + cut + 1 if cut >= 0 else (0 if back == size else size)
        log.warning("sam.out_torn_tail path=%s cut_bytes=%d", self.path, size - keep)
        fh.truncate(keep)
        fh.seek(0, os.SEEK_END)

    def event(self, ev: Any) -> bool:
        from schemas.events import encode_event

        self.fh.write(encode_event(ev) + b"\n")
        return True

    def reject(self, raw: bytes, source: str, position: str, reason: str) -> None:
        self.dead_letters += 1
        err.print(f"[yellow]dead letter[/] {esc(source)}:{esc(position)}: {esc(reason)}", highlight=False)

    def flush(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


class StoreWriter:
    """Events counted into a store (the embedded replay's Replayer), dead letters into its dead_letter table."""

    def __init__(self, url: str) -> None:
        from stagewatch.replay import Replayer
        from stagewatch.store import open_store

        self.store = open_store(url)
        self.replayer = Replayer(self.store)

    def event(self, ev: Any) -> bool:
        return self.replayer.feed_event(ev, f"sam:{ev.stage}" if ev.event_id.startswith("sam:") else "follow")

    def reject(self, raw: bytes, source: str, position: str, reason: str) -> None:
        from schemas.events import DeadLetter

        self.replayer.dead_letter(DeadLetter(source, position, reason, raw))

    def flush(self) -> None:
        self.replayer.flush()
        self.replayer.report.invalid.clear()  # kept in the store; a follower must not grow with them

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close:
            close()


def kafka_writer(kafka: str, topic_prefix: str, client_id: str) -> Any:
    """A Publisher (Kafka), after checking the broker and the topics exist."""
    from ingest.kafka_io import KafkaError, SafeProducer, Topics, check_kafka
    from ingest.publish import Publisher

    try:
        existing = check_kafka(kafka, 10.0)
    except KafkaError as exc:
        raise _user_error(str(exc)) from None
    topics = Topics(topic_prefix)
    missing = [t for t in topics.all() if t not in existing]
    if missing:
        raise _user_error(f"Topic(s) {', '.join(missing)} do not exist on {kafka}; run `stagewatch topics create"
                          + (f" --topic-prefix {topic_prefix}" if topic_prefix else "") + "` first.")
    pub = Publisher(SafeProducer(kafka, client_id=client_id), topics)
    pub.close = lambda: None  # type: ignore[attr-defined]
    return pub


def open_writer(out: Optional[Path], store: Optional[str], kafka: Optional[str], topic_prefix: str = "",
                client_id: str = "stagewatch-sam") -> tuple[Any, str]:
    """The one destination given (``--out``, ``--store``, ``--kafka``; else $STAGEWATCH_KAFKA) and its name."""
    given = [name for name, v in (("--out", out), ("--store", store), ("--kafka", kafka)) if v]
    if len(given) > 1:
        raise _user_error(f"Give one destination, not {' and '.join(given)}: --out FILE, --store URL or --kafka "
                          "HOST:PORT.")
    if out:
        if out.parent and not out.parent.is_dir():
            raise _user_error(f"Cannot write {out}: directory {out.parent} does not exist.")
        return FileWriter(out), str(out)
    if store:
        return StoreWriter(store), store
    kafka = kafka or os.environ.get(KAFKA_ENV)
    if not kafka:
        raise _user_error("No destination: pass --out FILE, --store URL or --kafka HOST:PORT (or set "
                          "STAGEWATCH_KAFKA).")
    return kafka_writer(kafka, topic_prefix, client_id), kafka


# ------------------------------------------------------------------------------------------ polling
@dataclass
class SamStatus:
    """What one SAM source did: for the status line of `sam poll` and `follow`."""

    polls: int = 0
    events: int = 0
    dead_letters: int = 0
    errors: int = 0
    requests: int = 0
    last_ok: float | None = None
    last_error: str = ""
    seconds: float = 0.0


def poll_once(poller: Any, writer: Any, status: SamStatus) -> Any:
    """One poll into the writer: events and dead letters written, flushed, then the checkpoint moved."""
    res = poller.poll()
    for ev in res.events:
        writer.event(ev)
    for dl in res.dead_letters:
        writer.reject(dl.raw, dl.source, dl.position, dl.reason)
    writer.flush()  # raises (Kafka DeliveryError, store error): then the checkpoint is not moved
    poller.commit()
    status.polls += 1
    status.events += len(res.events)
    status.dead_letters += len(res.dead_letters)
    status.requests += res.requests
    status.seconds += res.seconds
    status.last_ok = time.time()
    return res


def sam_status_line(name: str, st: SamStatus, res: Any = None) -> str:
    lag = "never polled" if st.last_ok is None else f"lag {time.time() - st.last_ok:,.0f} s"
    rate = f", {st.events / st.seconds:,.0f} events/s" if st.seconds else ""
    last = f"; last poll {res.requests} requests, {len(res.events):,} new events" if res is not None else ""
    error = f" (last: {st.last_error})" if st.errors and st.last_error else ""
    return (f"sam {name}: {st.events:,} events, {st.dead_letters} dead letters, {st.polls} polls, "
            f"{st.requests:,} requests{rate}, {lag}, {st.errors} errors{error}{last}")


def make_poller(url: str, definition: str, campaign: str, stage: str, projects: list[str] | tuple[str, ...],
                output_dims: Optional[str], checkpoint: Path, *, cert: Optional[str] = None,
                key: Optional[str] = None, token_file: Optional[str] = None, timeout_s: float = 30.0,
                retries: int = 3, workers: int = 4) -> Any:
    from ingest.sam import SamError, SamHttp, SamPoller, SamSource
    from ingest.sam.http import Auth

    for opt, value in (("--campaign", campaign), ("--stage", stage)):
        if not 0 < len(value) <= 1024:
            raise _user_error(f"{opt} must be 1 to 1,024 characters (the contract's name bound).")
    if timeout_s <= 0 or retries < 0 or workers < 1:
        raise _user_error("--timeout must be > 0, --retries >= 0 and --workers >= 1.")
    try:
        auth = Auth.discover(url, cert=cert, key=key, token_file=token_file)
        http = SamHttp(url, auth=auth, read_timeout_s=timeout_s, retries=retries, pool_size=workers)
        return SamPoller(SamSource(url, definition, campaign, stage, tuple(projects), output_dims or None), http,
                         checkpoint, workers=workers)
    except SamError as exc:
        raise _user_error(str(exc)) from None


def default_checkpoint(campaign: str, stage: str, definition: str) -> Path:
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{campaign}.{stage}")[:80]
    h = hashlib.sha1(f"{campaign}\x1f{stage}\x1f{definition}".encode()).hexdigest()[:8]
    return Path(f".stagewatch-sam-{safe}-{h}.json")


@sam_app.command("poll")
def sam_poll(
    url: str = typer.Option(..., "--url", help="The SAMWeb API root of the experiment, e.g. "
                                                "https://samweb.fnal.gov:8483/sam/nova/api."),
    definition: str = typer.Option(..., "--definition", help="The stage's input dataset definition."),
    project: Optional[list[str]] = typer.Option(None, "--project", help="A SAM project of the stage (repeat for "
                                                                        "recovery projects)."),
    campaign: str = typer.Option(..., "--campaign"),
    stage: str = typer.Option(..., "--stage"),
    output_dims: Optional[str] = typer.Option(None, "--output-dims", help="Dimensions that select the stage's "
                                              "outputs among the inputs' children, e.g. \"data_tier reco and "
                                              "version v1\" (without: every child is an output)."),
    interval: float = typer.Option(300.0, "--interval", help="Seconds between polls."),
    once: bool = typer.Option(False, "--once", help="Poll once and exit."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="First-seen times and what was written "
                                              "(default .stagewatch-sam-CAMPAIGN.STAGE-HASH.json here)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Append JSON lines to this file."),
    store: Optional[str] = typer.Option(None, "--store", help="Count into this store (chdb:PATH or "
                                                               "clickhouse://...)."),
    kafka: Optional[str] = typer.Option(None, "--kafka", help="Publish to Kafka HOST:PORT (default when no "
                                                               "--out/--store: $STAGEWATCH_KAFKA)."),
    topic_prefix: str = typer.Option("", "--topic-prefix", envvar="STAGEWATCH_TOPIC_PREFIX"),
    cert: Optional[str] = typer.Option(None, "--cert", help="X.509 proxy or certificate (default "
                                                             "$X509_USER_PROXY, as samweb does)."),
    key: Optional[str] = typer.Option(None, "--key", help="Key of --cert, if separate."),
    token_file: Optional[str] = typer.Option(None, "--token-file", help="Bearer token file (default "
                                                                         "$BEARER_TOKEN / $BEARER_TOKEN_FILE)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for one SAM answer."),
    retries: int = typer.Option(3, "--retries", help="Retries of a 5xx, timeout or refused connection."),
    workers: int = typer.Option(4, "--workers", help="Concurrent SAM requests."),
) -> None:
    """Poll a stage's SAM definition, projects, outputs and their locations, and write the new file events
    (re-polls, restarts and a second poller change no number). Reads only: nothing in SAM changes."""
    from ingest.sam import SamError

    if interval <= 0:
        raise _user_error("--interval must be > 0 seconds.")
    ckpt = checkpoint or default_checkpoint(campaign, stage, definition)
    poller = make_poller(url, definition, campaign, stage, project or [], output_dims, ckpt, cert=cert, key=key,
                         token_file=token_file, timeout_s=timeout, retries=retries, workers=workers)
    writer, dest = open_writer(out, store, kafka, topic_prefix)
    status = SamStatus()
    name = f"{campaign}/{stage}"
    stop = threading.Event() if once else _stop_on_signals()
    err.print(f"polling SAM definition {esc(definition)} at {esc(url)} for {esc(name)} into {esc(dest)} "
              f"(checkpoint {esc(ckpt)})", highlight=False)
    try:
        while True:
            try:
                res = poll_once(poller, writer, status)
            except SamError as exc:
                status.errors += 1
                status.last_error = str(exc)
                log.error("sam.poll_failed campaign=%s stage=%s error=%s", campaign, stage, exc)
                if once:
                    err.print(f"[red]error:[/] {esc(exc)}", highlight=False)
                    raise typer.Exit(1)
                err.print(f"[yellow]poll failed[/] {esc(exc)} (next try in {interval:g} s)", highlight=False)
                res = None
            err.print(esc(sam_status_line(name, status, res)), highlight=False)
            if once or stop.wait(interval):
                break
    except _delivery_errors() as exc:  # a failed write: exit 1, the checkpoint not moved
        err.print(f"[red]error:[/] {esc(exc)} The checkpoint was not moved: run again to write from there.",
                  highlight=False)
        raise typer.Exit(1)
    finally:
        writer.close()
        poller.http.close()


def _delivery_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    mod = sys.modules.get("ingest.kafka_io")
    if mod is not None:
        found.append(mod.KafkaError)
    from stagewatch.store import StoreError

    found.append(StoreError)
    return tuple(found)


def _stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM finish the current poll, then stop (the streaming commands' handler)."""
    from stagewatch.cli_stream import _stop_on_signals as stop_on_signals

    return stop_on_signals()


def register(app: typer.Typer) -> None:
    app.add_typer(sam_app, name="sam")
