"""``stagewatch sample ...``: write small genuine input files bundled with the package.

A new user following the README in an empty directory has no HTCondor job event log of their own
yet; ``stagewatch sample condor-log --out job.log`` gives them one (two jobs of a real user log's
event types: submit, execute, suspend, disconnect and reconnect, a failed reconnect, a shadow
exception, hold, release, abort, normal termination), so ``convert condor-log`` and
``tail condor-log`` can be tried as written.

``stagewatch.cli`` calls ``register(app)`` if this module imports.
"""

from __future__ import annotations

import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

import typer

log = logging.getLogger("stagewatch.cli")

# name -> (package, resource, what it is)
SAMPLES: dict[str, tuple[str, str, str]] = {
    "condor-log": ("ingest", "samples/condor_job.log",
                   "an HTCondor job event log of two jobs (cluster 200) with every event type stagewatch reads"),
}

sample_app = typer.Typer(no_args_is_help=True, help="Write small sample input files (to try the commands on).")


def sample_bytes(name: str) -> bytes:
    """The bundled sample ``name`` (a key of :data:`SAMPLES`), byte for byte."""
    package, resource, _ = SAMPLES[name]
    return resources.files(package).joinpath(resource).read_bytes()


def _write(name: str, out: Optional[Path]) -> None:
    data = sample_bytes(name)
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if out.is_dir():
        from stagewatch.cli import UserError

        raise UserError(f"--out {out} is a directory; give a file name, e.g. --out {out / 'job.log'}.")
    try:
        out.write_bytes(data)
    except OSError as exc:
        from stagewatch.cli import UserError

        raise UserError(f"Cannot write {out} ({exc.strerror}); choose another --out.") from None
    log.info("sample.written name=%s path=%s bytes=%d", name, out, len(data))
    typer.echo(f"wrote {SAMPLES[name][2]} to {out}", err=True)


@sample_app.command("condor-log")
def condor_log(
    out: Optional[Path] = typer.Option(None, "--out", help="Write here (overwrites) instead of stdout."),
) -> None:
    """A small HTCondor job event log (the submit file's `log = ...` format), to try `convert condor-log`
    and `tail condor-log` on."""
    _write("condor-log", out)


def register(app: typer.Typer) -> None:
    """Add ``stagewatch sample ...`` to the main CLI."""
    app.add_typer(sample_app, name="sample")
