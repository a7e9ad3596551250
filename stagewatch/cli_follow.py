"""``stagewatch follow --config campaign.toml``: a whole campaign's SAM pollers and HTCondor log tailers.

One process, one loop, one destination (``--out`` / ``--store`` / ``--kafka`` as ``sam poll``): each
source is stepped when it is due (a SAM stage every ``sam_interval`` seconds, a condor log every
``poll_s``), writes its events, flushes, then moves its own checkpoint. One loop rather than threads
because the embedded store (chDB) is not shared between threads and the sources are I/O-light; a SAM
poll is bounded (see ingest.sam.poller) so it never starves the tailers for long. Every
``interval`` seconds each source prints one status line: events emitted, lag, errors.

The config (TOML)::

    campaign = "nova_prod5_mc"
    interval = 60                 # seconds between status lines (default 60)
    sam_interval = 300            # seconds between SAM polls (default: interval)
    checkpoint_dir = "ckpt"       # default: CONFIG's name + ".checkpoints", next to it

    [sam]                         # shared by the stages
    url = "https://samweb.fnal.gov:8483/sam/nova/api"
    # cert, key, token_file, timeout, retries, workers

    [[stages]]
    name = "fd_reco"
    definition = "nova_prod5_fd_reco_input"
    projects = ["nova_prod5_fd_reco_20170606", "nova_prod5_fd_reco_recovery_20170609"]
    output_dims = "data_tier reco and version v1"

    [[condor]]                    # one per log (a schedd's EVENT_LOG, rotations first)
    logs = ["/var/log/condor/EventLog.old", "/var/log/condor/EventLog"]
    schedd = "fifebatch1.fnal.gov"
    campaign_attr = "POMS4_CAMPAIGN_NAME"
    stage_attr = "POMS4_CAMPAIGN_STAGE_NAME"
    attrs = { submission = "POMS4_SUBMISSION_ID", site = "MATCH_GLIDEIN_Site" }
    # or, for a per-submission log: stage = "fd_reco" (campaign defaults to the top-level one)

Jobs of other campaigns in a schedd-wide log are left out (counted in the status line): the config
follows one campaign.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from stagewatch.cli_sam import (SamStatus, _stop_on_signals, _user_error, err, make_poller, open_writer, poll_once,
                                sam_status_line)
from stagewatch.console import esc

log = logging.getLogger("stagewatch.follow")

TOP_KEYS = {"campaign", "interval", "sam_interval", "poll_s", "checkpoint_dir", "sam", "stages", "condor"}
SAM_KEYS = {"url", "cert", "key", "token_file", "timeout", "retries", "workers"}
STAGE_KEYS = {"name", "definition", "projects", "output_dims", "url"}
CONDOR_KEYS = {"logs", "schedd", "campaign", "stage", "submission", "campaign_attr", "stage_attr", "attrs",
               "default_campaign", "default_stage", "max_held", "max_hold_s", "name"}


# ------------------------------------------------------------------------------------------- config
def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None,
         required: bool = False) -> Any:
    if key not in table:
        if required:
            raise _user_error(f"{where}: `{key}` is missing; add it to the config.")
        return default
    value = table[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise _user_error(f"{where}: `{key}` must be a number, not {value!r}.")
    if not isinstance(value, kind):
        kind_name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _user_error(f"{where}: `{key}` must be a {kind_name}, not {value!r:.80}.")
    return value


def _no_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _user_error(f"{where}: unknown key(s) {', '.join(unknown)}; the known ones are "
                          f"{', '.join(sorted(allowed))}.")


def load_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except FileNotFoundError:
        raise _user_error(f"No config at {path}; check the path (see `stagewatch follow --help` for its "
                          "format).") from None
    except OSError as exc:
        raise _user_error(f"Cannot read {path} ({exc.strerror or exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise _user_error(f"{path} is not valid TOML ({exc}); fix that line.") from None
    _no_unknown(cfg, TOP_KEYS, str(path))
    return cfg


@dataclass
class CondorSource:
    """One HTCondor log (its rotations first) followed into the writer."""

    name: str
    follower: Any
    campaign: str
    events: int = 0
    dead_letters: int = 0
    other_campaigns: int = 0
    errors: int = 0
    last_error: str = ""
    stopped: bool = False
    seconds: float = 0.0

    def step(self, writer: Any, max_events: int = 10_000) -> bool:
        """Read what was appended, write it, flush, commit. True when the position moved."""
        if self.stopped:
            return False
        t0 = time.perf_counter()
        before = (self.follower.reading, self.follower.offset)
        try:
            events = self.follower.poll(max_events)
        except Exception as exc:  # LogReplaced and the like: this source stops, the others go on
            if not _is_condor_error(exc):
                raise
            self.errors += 1
            self.last_error = str(exc)
            self.stopped = True
            log.error("follow.condor_failed source=%s error=%s", self.name, exc)
            err.print(f"[red]condor {esc(self.name)} stopped:[/] {esc(exc)}; fix it and restart (the checkpoint "
                      "is kept).", highlight=False)
            return False
        dead = self.follower.take_dead_letters()
        for ev in events:
            if ev.campaign != self.campaign:
                self.other_campaigns += 1
                continue
            writer.event(ev)
            self.events += 1
        for dl in dead:
            writer.reject(dl.raw, dl.source, dl.position, dl.reason)
        self.dead_letters += len(dead)
        if self.follower.uncommitted:
            writer.flush()  # raises on a failed write: then the checkpoint is not moved
            self.follower.commit()
        self.seconds += time.perf_counter() - t0
        return (self.follower.reading, self.follower.offset) != before

    def status_line(self) -> str:
        try:
            lag = max(os.path.getsize(self.follower.reading) - self.follower.offset, 0)
            lag_text = f"lag {lag:,} bytes"
        except (OSError, TypeError):
            lag_text = "lag unknown (no log yet)"
        rate = f", {self.events / self.seconds:,.0f} events/s" if self.seconds else ""
        error = f" (last: {self.last_error})" if self.errors else ""
        return (f"condor {self.name}: {self.events:,} events, {self.dead_letters} dead letters, "
                f"{self.other_campaigns:,} of other campaigns left out, {self.follower.held} held{rate}, "
                f"{lag_text}, {self.errors} errors{error}" + (" [stopped]" if self.stopped else ""))


def _is_condor_error(exc: Exception) -> bool:
    from ingest.condor_log import CheckpointMismatch, LogReplaced

    return isinstance(exc, (LogReplaced, CheckpointMismatch, OSError))


@dataclass
class SamStage:
    name: str
    poller: Any
    status: SamStatus = field(default_factory=SamStatus)
    next_due: float = 0.0
    last: Any = None


def build_sources(cfg: dict[str, Any], config_path: Path) -> tuple[str, list[SamStage], list[CondorSource],
                                                                   dict[str, float]]:
    where = str(config_path)
    campaign = _get(cfg, "campaign", str, where, required=True)
    interval = float(_get(cfg, "interval", (int, float), where, 60))
    sam_interval = float(_get(cfg, "sam_interval", (int, float), where, interval))
    poll_s = float(_get(cfg, "poll_s", (int, float), where, 1.0))
    if min(interval, sam_interval, poll_s) <= 0:
        raise _user_error(f"{where}: interval, sam_interval and poll_s must be > 0 seconds.")
    ckdir = Path(_get(cfg, "checkpoint_dir", str, where, "") or
                 config_path.with_name(config_path.stem + ".checkpoints"))
    if not ckdir.is_absolute() and "checkpoint_dir" in cfg:
        ckdir = config_path.parent / ckdir
    sam = _get(cfg, "sam", dict, where, {})
    _no_unknown(sam, SAM_KEYS, f"{where} [sam]")
    stages_cfg = _get(cfg, "stages", list, where, [])
    condor_cfg = _get(cfg, "condor", list, where, [])
    if not stages_cfg and not condor_cfg:
        raise _user_error(f"{where} lists no [[stages]] and no [[condor]] logs: nothing to follow.")
    plans: list[tuple[str, dict[str, Any]]] = []
    for i, st in enumerate(stages_cfg):
        w = f"{where} [[stages]] #{i + 1}"
        if not isinstance(st, dict):
            raise _user_error(f"{w} is not a table.")
        _no_unknown(st, STAGE_KEYS, w)
        name = _get(st, "name", str, w, required=True)
        if "definition" not in st:
            continue  # a stage with jobs only (its condor log is listed below)
        url = _get(st, "url", str, w, None) or _get(sam, "url", str, f"{where} [sam]", None)
        if not url:
            raise _user_error(f"{w}: no SAM url; set `url` in [sam] (e.g. https://samweb.fnal.gov:8483/sam/nova/api).")
        projects = _get(st, "projects", list, w, [])
        if not all(isinstance(p, str) for p in projects):
            raise _user_error(f"{w}: `projects` must be a list of project names.")
        plans.append((name, {"url": url, "definition": _get(st, "definition", str, w), "projects": projects,
                             "output_dims": _get(st, "output_dims", str, w, None)}))
    names = [n for n, _ in plans]
    if len(set(names)) != len(names):
        raise _user_error(f"{where}: a stage is listed twice with a definition; give each stage once.")
    condor: list[tuple[str, dict[str, Any]]] = []
    for i, c in enumerate(condor_cfg):
        w = f"{where} [[condor]] #{i + 1}"
        if not isinstance(c, dict):
            raise _user_error(f"{w} is not a table.")
        _no_unknown(c, CONDOR_KEYS, w)
        logs = _get(c, "logs", list, w, required=True)
        if not logs or not all(isinstance(p, str) and p for p in logs):
            raise _user_error(f"{w}: `logs` must be a non-empty list of file names (rotations first).")
        condor.append((w, c))
    sam_stages = [SamStage(name, make_poller(
        p["url"], p["definition"], campaign, name, p["projects"], p["output_dims"],
        ckdir / f"sam-{_safe(name)}.json", cert=sam.get("cert"), key=sam.get("key"), token_file=sam.get("token_file"),
        timeout_s=float(sam.get("timeout", 30.0)), retries=int(sam.get("retries", 3)),
        workers=int(sam.get("workers", 4)))) for name, p in plans]
    tailers = [_condor_source(w, c, i, campaign, ckdir, config_path) for i, (w, c) in enumerate(condor)]
    try:  # only now that the config is known to be good
        ckdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _user_error(f"Cannot create the checkpoint directory {ckdir} ({exc.strerror or exc}); set "
                          "checkpoint_dir to a directory you can write.") from None
    return campaign, sam_stages, tailers, {"interval": interval, "sam_interval": sam_interval, "poll_s": poll_s}


def _condor_source(where: str, c: dict[str, Any], index: int, campaign: str, ckdir: Path,
                   config_path: Path) -> CondorSource:
    from ingest.condor import Routing, RoutingError
    from ingest.condor_log import CheckpointMismatch, LogFollower

    attrs = dict(_get(c, "attrs", dict, where, {}))
    for k, v in attrs.items():
        if not isinstance(v, str):
            raise _user_error(f"{where}: attrs.{k} must be an attribute name (a string).")
    for fld in ("campaign", "stage"):
        if f"{fld}_attr" in c:
            attrs[fld] = _get(c, f"{fld}_attr", str, where)
    fixed_campaign = _get(c, "campaign", str, where, None)
    if fixed_campaign is None and "campaign" not in attrs:
        fixed_campaign = campaign
    routing = Routing(campaign=fixed_campaign, stage=_get(c, "stage", str, where, None),
                      submission=_get(c, "submission", str, where, None), attrs=attrs,
                      default_campaign=_get(c, "default_campaign", str, where, None),
                      default_stage=_get(c, "default_stage", str, where, None),
                      max_held=int(_get(c, "max_held", int, where, 100_000)),
                      max_hold_s=float(_get(c, "max_hold_s", (int, float), where, 3600.0)))
    try:
        routing.check()
    except RoutingError as exc:
        raise _user_error(f"{where}: {exc}") from None
    logs = [str(Path(p) if Path(p).is_absolute() else config_path.parent / p) for p in c["logs"]]
    name = _get(c, "name", str, where, None) or f"{c.get('schedd') or 'log'}:{os.path.basename(logs[-1])}"
    ckpt = ckdir / f"condor-{index + 1}-{_safe(os.path.basename(logs[-1]))}.json"
    try:
        follower = LogFollower(logs, routing=routing, schedd=_get(c, "schedd", str, where, None),
                               checkpoint_path=ckpt)
    except CheckpointMismatch as exc:
        raise _user_error(f"{where}: {exc}; give the original logs and schedd, or another checkpoint_dir.") from None
    return CondorSource(name, follower, campaign)


def _safe(name: str) -> str:
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
    return safe if safe == name else f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------------------------- run
def run_follow(sam_stages: list[SamStage], tailers: list[CondorSource], writer: Any, timing: dict[str, float], *,
               stop: threading.Event, once: bool = False, clock: Any = time.monotonic) -> None:
    """Step every source when due until ``stop``; with ``once``, one SAM poll each and the logs to their end."""
    from ingest.sam import SamError

    next_status = clock() + timing["interval"]
    idle_since: float | None = None
    while True:
        now = clock()
        for st in sam_stages:
            if once and st.status.polls + st.status.errors > 0:
                continue
            if now >= st.next_due:
                st.next_due = now + timing["sam_interval"]
                try:
                    st.last = poll_once(st.poller, writer, st.status)
                except SamError as exc:
                    st.status.errors += 1
                    st.status.last_error = str(exc)
                    st.last = None
                    log.error("follow.sam_failed stage=%s error=%s", st.name, exc)
        moved = False
        for t in tailers:
            for _ in range(100):  # a growing log: read on, but let the others have their turn
                if not t.step(writer):
                    break
                moved = True
        if once:
            # the end of every log: no movement for longer than a rotation's grace (a finished rotated
            # file is left only after it stayed unwritten that long)
            if moved:
                idle_since = None
            elif idle_since is None:
                idle_since = clock()
            elif clock() - idle_since > max((getattr(t.follower, "rotation_grace_s", 1.0) for t in tailers),
                                            default=0.0) + 0.2:
                break
            if not moved:
                time.sleep(0.1)
            continue
        if clock() >= next_status:
            print_status(sam_stages, tailers)
            next_status = clock() + timing["interval"]
        if not moved and stop.wait(timing["poll_s"]):
            break
        if stop.is_set():
            break
    print_status(sam_stages, tailers)


def print_status(sam_stages: list[SamStage], tailers: list[CondorSource]) -> None:
    for st in sam_stages:
        err.print(esc(sam_status_line(st.name, st.status, st.last)), highlight=False)
    for t in tailers:
        err.print(esc(t.status_line()), highlight=False)


def follow(
    config: Path = typer.Option(..., "--config", help="The campaign's TOML file: SAM stages and condor logs "
                                                       "(its format: docs/sources.md)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Append JSON lines to this file."),
    store: Optional[str] = typer.Option(None, "--store", help="Count into this store (chdb:PATH or clickhouse://...)."),
    kafka: Optional[str] = typer.Option(None, "--kafka", help="Publish to Kafka HOST:PORT (default when no "
                                                               "--out/--store: $STAGEWATCH_KAFKA)."),
    topic_prefix: str = typer.Option("", "--topic-prefix", envvar="STAGEWATCH_TOPIC_PREFIX"),
    once: bool = typer.Option(False, "--once", help="Poll each SAM stage once, read each log to its end, exit."),
) -> None:
    """Follow a whole campaign: the SAM pollers and HTCondor log tailers its config lists, each with its
    checkpoint, until stopped (Ctrl-C or SIGTERM), with one status line per source per interval."""
    from ingest.kafka_io import KafkaError
    from stagewatch.store import StoreError

    cfg = load_config(config)
    campaign, sam_stages, tailers, timing = build_sources(cfg, config)
    writer, dest = open_writer(out, store, kafka, topic_prefix, client_id="stagewatch-follow")
    stop = threading.Event() if once else _stop_on_signals()
    err.print(f"following campaign {esc(campaign)}: {len(sam_stages)} SAM stage(s), {len(tailers)} condor log(s) "
              f"into {esc(dest)}; Ctrl-C to stop", highlight=False)
    try:
        run_follow(sam_stages, tailers, writer, timing, stop=stop, once=once)
    except (KafkaError, StoreError) as exc:  # a failed write: exit 1, no checkpoint moved past it
        err.print(f"[red]error:[/] {esc(exc)} The checkpoints were not moved past it: restart to write from there.",
                  highlight=False)
        raise typer.Exit(1)
    finally:
        writer.close()
        for st in sam_stages:
            st.poller.http.close()
    failed = sum(st.status.errors for st in sam_stages) + sum(t.errors for t in tailers)
    if once and failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("follow", help=follow.__doc__)(follow)
