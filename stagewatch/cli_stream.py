"""Streaming commands: ``topics create``, ``publish``, ``tail condor-log``, ``worker``.

``stagewatch.cli`` calls ``register(app)`` if this module imports, so the heavy imports (confluent-kafka,
faust) happen inside the commands: ``stagewatch status`` does not pay for them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from stagewatch import cli_condor
from stagewatch.console import esc

err = Console(stderr=True, soft_wrap=True)  # one line per message: logs and tests grep them
log = logging.getLogger("stagewatch.cli")

KAFKA_ENV = "STAGEWATCH_KAFKA"
STORE_ENV = "STAGEWATCH_STORE"

KafkaOpt = typer.Option(None, "--kafka", envvar=KAFKA_ENV,
                        help="Kafka bootstrap servers HOST:PORT. Default: $STAGEWATCH_KAFKA (set by "
                             "`eval \"$(stagewatch dev up)\"`).")
PrefixOpt = typer.Option("", "--topic-prefix", envvar="STAGEWATCH_TOPIC_PREFIX",
                         help="Prefix of the topic names (<prefix>stagewatch.job-events, ...), to run several "
                              "pipelines on one broker.")

topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the pipeline.")
tail_app = typer.Typer(no_args_is_help=True, help="Follow growing logs and publish their events to Kafka.")


def _user_error(message: str) -> Exception:
    from stagewatch.cli import UserError

    return UserError(message)


def _need_kafka(kafka: Optional[str]) -> str:
    if not kafka:
        raise _user_error("No Kafka broker given: pass --kafka HOST:PORT or set STAGEWATCH_KAFKA "
                          "(`eval \"$(stagewatch dev up)\"` starts one and sets it).")
    return kafka


def _check_kafka(kafka: str, timeout_s: float = 10.0) -> dict[str, int]:
    from ingest.kafka_io import KafkaError, check_kafka

    try:
        return check_kafka(kafka, timeout_s)
    except KafkaError as exc:
        raise _user_error(str(exc)) from None


def _stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM set an event, so loops finish their current step (flush, commit) and return."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        err.print(f"stopping ({signal.Signals(signum).name}) after the current step ...")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@topics_app.command("create")
def topics_create(
    kafka: Optional[str] = KafkaOpt,
    partitions: int = typer.Option(8, "--partitions", help="Partitions per topic (workers share partitions; "
                                                           "more partitions allow more workers)."),
    replication_factor: int = typer.Option(1, "--replication-factor", help="Replicas per partition (1 on a "
                                                                           "single broker)."),
    topic_prefix: str = PrefixOpt,
) -> None:
    """Create the job-events, file-events and dead-letter topics (idempotent)."""
    from ingest.kafka_io import KafkaError, Topics, create_topics

    kafka = _need_kafka(kafka)
    try:
        result = create_topics(kafka, partitions, replication_factor, topics=Topics(topic_prefix))
    except KafkaError as exc:
        raise _user_error(str(exc)) from None
    for name, outcome in result.items():
        err.print(f"{esc(name)}: {esc(outcome)}", highlight=False)


def _publisher(kafka: str, topic_prefix: str, store: Optional[str], show_invalid: int = 20) -> Any:
    from ingest.kafka_io import SafeProducer, Topics
    from ingest.publish import Publisher
    from stagewatch.sink import StoreSink

    shown = 0

    def on_invalid(r: Any) -> None:
        nonlocal shown
        shown += 1
        if shown <= show_invalid:
            err.print(f"[yellow]invalid[/] {esc(r)} (sent to the dead-letter topic)", markup=True, highlight=False)

    sink = None
    if store:
        from stagewatch.store import open_store

        sink = StoreSink(open_store(store), retry_for_s=30.0)
    return Publisher(SafeProducer(kafka, client_id="stagewatch-publish"), Topics(topic_prefix),
                     on_invalid=on_invalid, dead_letter_sink=sink)


def publish(
    files: Optional[list[str]] = typer.Argument(None, help="JSON-lines files of job-event/1 and file-event/1 "
                                                           "('-' is stdin)."),
    kafka: Optional[str] = KafkaOpt,
    store: Optional[str] = typer.Option(None, "--store", envvar=STORE_ENV,
                                        help="Also record invalid lines in this store's dead_letter table."),
    simulate: Optional[str] = typer.Option(None, "--simulate", help="Publish a simulator preset live instead of "
                                                                    "files (nova-talk, nova-week, tiny)."),
    speed: float = typer.Option(0.0, "--speed", help="With --simulate: simulated seconds per real second; "
                                                      "0 = as fast as possible."),
    seed: int = typer.Option(1, "--seed", help="With --simulate: the simulator's seed."),
    topic_prefix: str = PrefixOpt,
) -> None:
    """Publish events to Kafka: JSON-lines files, or the simulator live (invalid lines go to the dead-letter
    topic, with the reason, and are listed)."""
    from ingest.kafka_io import DeliveryError, Topics
    from ingest.publish import publish_events, publish_files

    kafka = _need_kafka(kafka)
    if bool(files) == bool(simulate):
        raise _user_error("Give either JSON-lines FILE(s) or --simulate PRESET.")
    if speed < 0:
        raise _user_error("--speed must be >= 0 (simulated seconds per real second; 0 = as fast as possible).")
    existing = _check_kafka(kafka)
    topics = Topics(topic_prefix)
    missing = [t for t in topics.all() if t not in existing]
    if missing:
        raise _user_error(f"Topic(s) {', '.join(missing)} do not exist on {kafka}; run `stagewatch topics create"
                          + (f" --topic-prefix {topic_prefix}" if topic_prefix else "") + "` first.")
    for f in files or ():
        if f != "-" and not os.path.isfile(f):
            raise _user_error(f"No such file: {f}")
    pub = _publisher(kafka, topic_prefix, store)
    try:
        if simulate:
            from ingest.simulator import PRESETS, simulate_many

            if simulate not in PRESETS:
                raise _user_error(f"Unknown preset {simulate!r}; choose one of {', '.join(PRESETS)}.")
            stop = _stop_on_signals()

            def progress(r: Any) -> None:
                err.print(f"published {r.published:,} events ({r.per_s:,.0f}/s)")

            rep = publish_events(pub, simulate_many(PRESETS[simulate](), seed), speed=speed, stop=stop,
                                 progress=progress)
        else:
            rep = publish_files(pub, files or [])
    except DeliveryError:
        raise  # a failure, not a usage error: stagewatch.cli.main prints its sentence, exit 1
    n_bad = len(rep.invalid)
    if n_bad > 20:
        err.print(f"... and {n_bad - 20} more invalid lines (topic {esc(topics.dead_letter)})", highlight=False)
    err.print(f"published {rep.published:,} events ({rep.job_events:,} job, {rep.file_events:,} file) to "
              f"{esc(kafka)} in {rep.seconds:.1f} s; {n_bad} invalid line(s) sent to {esc(topics.dead_letter)}",
              highlight=False)


@tail_app.command("condor-log")
def tail_condor_log(
    paths: list[Path] = typer.Argument(..., help="The HTCondor event log to follow, last (it may not exist yet); "
                                                 "files before it are read first, in order (rotations first: "
                                                 "EventLog.old EventLog)."),
    campaign: Optional[str] = cli_condor.CampaignOpt,
    stage: Optional[str] = cli_condor.StageOpt,
    submission: Optional[str] = cli_condor.SubmissionOpt,
    campaign_attr: Optional[str] = cli_condor.CampaignAttrOpt,
    stage_attr: Optional[str] = cli_condor.StageAttrOpt,
    attr: Optional[list[str]] = cli_condor.AttrOpt,
    default_campaign: Optional[str] = cli_condor.DefaultCampaignOpt,
    default_stage: Optional[str] = cli_condor.DefaultStageOpt,
    max_held: int = cli_condor.MaxHeldOpt,
    max_hold_s: float = cli_condor.MaxHoldOpt,
    schedd: Optional[str] = cli_condor.SchedOpt,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Where the read position (and the events "
                                                                         "waiting for their job's 028 event) is "
                                                                         "kept (default LAST_PATH.stagewatch-"
                                                                         "checkpoint)."),
    poll_s: float = typer.Option(1.0, "--poll-s", help="Seconds between polls when the log has not grown."),
    kafka: Optional[str] = KafkaOpt,
    topic_prefix: str = PrefixOpt,
) -> None:
    """Follow a growing HTCondor event log (per-submission, or a schedd's EVENT_LOG with --campaign-attr/
    --stage-attr) through its rotations and publish its job events (resumes from the checkpoint after a stop
    or a crash, with no gap; events re-sent after a crash keep their event_id)."""
    from ingest.condor.tailing import FollowReport, run_follower
    from ingest.condor_log import CheckpointMismatch, LogFollower, LogReplaced
    from ingest.kafka_io import DeliveryError, SafeProducer, Topics
    from ingest.publish import Publisher

    routing = cli_condor.routing_from_options(campaign, stage, submission, campaign_attr, stage_attr, attr,
                                              default_campaign, default_stage, max_held, max_hold_s, schedd)
    for p in paths[:-1]:
        if not p.is_file():
            raise _user_error(f"No HTCondor log at {p}; check the path (only the last file may not exist yet).")
    cli_condor.check_distinct(paths)
    kafka = _need_kafka(kafka)
    existing = _check_kafka(kafka)
    topics = Topics(topic_prefix)
    missing = [t for t in (topics.job_events, topics.dead_letter) if t not in existing]
    if missing:
        raise _user_error(f"Topic(s) {', '.join(missing)} do not exist on {kafka}; run `stagewatch topics create"
                          + (f" --topic-prefix {topic_prefix}" if topic_prefix else "") + "` first.")
    ckpt = checkpoint or Path(str(paths[-1]) + ".stagewatch-checkpoint")
    try:
        follower = LogFollower([str(p) for p in paths], routing=routing, schedd=schedd, checkpoint_path=ckpt)
    except CheckpointMismatch as exc:
        raise _user_error(f"{exc}; pass another --checkpoint or the original options.") from None
    pub = Publisher(SafeProducer(kafka, client_id="stagewatch-tail"), topics)
    stop = _stop_on_signals()
    err.print(f"following {esc(follower.reading)} (checkpoint {esc(ckpt)}, resuming at byte "
              f"{follower.committed_offset} with {follower.held:,} held events); Ctrl-C to stop", highlight=False)

    def closing(rep: Any) -> str:
        return (f"stopped following {esc(follower.reading)} at byte {follower.committed_offset} (checkpoint "
                f"{esc(ckpt)}, {follower.held:,} events held for their job's 028 event): published "
                f"{rep.published:,} events and {rep.dead_letters:,} dead letters in {rep.commits} commit(s); "
                f"{esc(follower.stats.summary())}")

    rep = FollowReport()
    try:
        run_follower(pub, follower, poll_s=poll_s, stop=stop, report=rep)
    except DeliveryError as exc:
        err.print(closing(rep), highlight=False)
        # a failure (exit 1), not a usage error (exit 2)
        raise DeliveryError(f"{exc} The checkpoint was not moved: restart to re-send from there.",
                            getattr(exc, "failed", 0)) from None
    except LogReplaced as exc:
        err.print(closing(rep), highlight=False)
        raise _user_error(f"{exc} (Rotations to .old, .1, ... are followed without help; this means the file "
                          "being read was deleted, replaced or rewritten before it was finished.)") from None
    finally:
        follower.close()
    err.print(closing(rep), highlight=False)


def worker(
    kafka: Optional[str] = KafkaOpt,
    store: Optional[str] = typer.Option(None, "--store", envvar=STORE_ENV,
                                        help="clickhouse://user:pass@host:port/db (the writer user). "
                                             "Default: $STAGEWATCH_STORE."),
    app_id: str = typer.Option("stagewatch", "--app-id", envvar="STAGEWATCH_APP_ID",
                               help="Consumer group and prefix of the internal topics; workers with the same id "
                                    "share the partitions."),
    topic_prefix: str = PrefixOpt,
    workdir: Path = typer.Option(Path(".stagewatch-worker"), "--workdir", help="Working directory of the worker."),
    metrics_port: Optional[int] = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on this port "
                                                                           "(/metrics)."),
    metrics_addr: str = typer.Option("127.0.0.1", "--metrics-addr", help="Address the metrics server binds."),
    web_port: Optional[int] = typer.Option(None, "--web-port", help="Enable Faust's web server on this port."),
    batch_max: int = typer.Option(5000, "--batch-max", help="Most messages per processed batch."),
    batch_within: float = typer.Option(0.5, "--batch-within", help="Seconds a batch waits to fill up (bounds "
                                                                   "ClickHouse inserts per second)."),
    stage_flush: float = typer.Option(1.0, "--stage-flush", help="Seconds between writes of changed stage rows."),
    replication_factor: int = typer.Option(1, "--replication-factor", help="For the internal topics it creates."),
    session_timeout: float = typer.Option(10.0, "--session-timeout", help="Seconds without heartbeat after which "
                                                                          "a dead worker's partitions move (>= 6)."),
    fast_consumer: bool = typer.Option(True, "--fast-consumer/--no-fast-consumer",
                                       help="Faust 0.15.3 consumer loop without two tasks per message."),
    log_level: str = typer.Option("info", "--worker-log-level", help="crit, error, warn, info or debug."),
    recovery_stall_timeout: float = typer.Option(
        120.0, "--recovery-stall-timeout",
        help="Seconds a table recovery may go without progress before the worker exits with code 75 for its "
             "supervisor to restart it (0: never)."),
    table_store: str = typer.Option("rocksdb", "--table-store", envvar="STAGEWATCH_TABLE_STORE",
                                    help="Where the worker keeps its tables: rocksdb (on disk under --workdir; a "
                                         "restart reads only the changelog's tail) or memory (rebuilt from the "
                                         "whole changelog at each start)."),
    max_message_bytes: int = typer.Option(900_000, "--max-message-bytes",
                                          help="Largest Kafka message the worker produces (keep it under the "
                                               "broker's message.max.bytes, 1,000,000 by default)."),
) -> None:
    """Run a faust-streaming worker: events from Kafka -> per-job/per-file state -> stage numbers in ClickHouse.
    Start several with the same --app-id to share the partitions; stop with Ctrl-C or SIGTERM.
    Exit code 75 asks to be started again (a stalled table recovery); 70 is an unexpected error."""
    from processors.faust import TABLE_STORES, WorkerConfig, WorkerError, run_worker

    kafka = _need_kafka(kafka)
    if table_store not in TABLE_STORES:
        raise _user_error(f"--table-store must be one of {', '.join(TABLE_STORES)} (got {table_store!r}).")
    if max_message_bytes < 10_000:
        raise _user_error("--max-message-bytes must be at least 10000 (the broker's default limit is 1000000).")
    store = store or os.environ.get(STORE_ENV)
    if not store:
        raise _user_error("No store given: pass --store clickhouse://user:pass@host:port/db or set STAGEWATCH_STORE.")
    if not store.startswith(("clickhouse://", "clickhouse+native://")):
        raise _user_error("The worker writes to a ClickHouse server: pass --store clickhouse://user:pass@host:port/db "
                          "(chdb: stores are for the embedded `stagewatch replay`).")
    _check_kafka(kafka)
    # Absolute before Faust sees it: faust.Worker changes into the workdir, after which a relative datadir
    # (workdir/faust) would no longer exist.
    cfg = WorkerConfig(kafka=kafka, store_url=store, app_id=app_id, topic_prefix=topic_prefix,
                       workdir=str(workdir.expanduser().resolve()),
                       metrics_port=metrics_port, metrics_addr=metrics_addr, web_port=web_port, batch_max=batch_max,
                       batch_within_s=batch_within, stage_flush_s=stage_flush, replication_factor=replication_factor,
                       session_timeout_s=session_timeout, fast_consumer=fast_consumer, log_level=log_level,
                       recovery_stall_timeout_s=recovery_stall_timeout, table_store=table_store,
                       max_message_bytes=max_message_bytes, ports=worker_ports(store))
    try:
        run_worker(cfg)
    except WorkerError as exc:
        raise _user_error(str(exc)) from None


def worker_ports(store_url: str) -> Any:
    """The worker's ports to stagewatch (processors/ must not import it): store check, sinks, metrics."""
    import time

    from processors.faust import WorkerError, WorkerPorts
    from stagewatch.metrics import WorkerMetrics
    from stagewatch.sink import StoreSink
    from stagewatch.store import StoreError, open_store

    metrics = WorkerMetrics()

    def check_store() -> None:
        """Fail at start, with the store's own message, if ClickHouse is unreachable or refuses the schema."""
        for attempt in range(1, 6):
            try:
                open_store(store_url, create=True).close()
                return
            except StoreError as exc:
                # ensure_schema re-creates the verify views (DROP + CREATE): two workers starting at the
                # same moment can collide on "already exists"; the next attempt finds them in place.
                if "already exists" in str(exc) and attempt < 5:
                    log.info("worker.schema_retry attempt=%d reason=concurrent_schema_creation", attempt)
                    time.sleep(0.3 * attempt)
                    continue
                raise WorkerError(f"{exc} Start it with `stagewatch dev up` or pass --store.") from exc
            except Exception as exc:
                raise WorkerError(f"Cannot reach the store {store_url.split('@')[-1]}: {exc}. Start it with "
                                  f"`stagewatch dev up` or pass --store.") from exc

    def new_sink(stop: threading.Event) -> StoreSink:
        # the schema was ensured once, by check_store
        return StoreSink(open_store(store_url, create=False), retry_for_s=float("inf"), on_flush=metrics.on_sink_flush,
                         stop=stop)

    return WorkerPorts(check_store=check_store, new_sink=new_sink, metrics=metrics)


def register(app: typer.Typer) -> None:
    """Add the streaming commands to the main CLI."""
    app.add_typer(topics_app, name="topics")
    app.add_typer(tail_app, name="tail")
    app.command("publish")(publish)
    app.command("worker")(worker)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `stagewatch topics|publish|tail|worker`")
