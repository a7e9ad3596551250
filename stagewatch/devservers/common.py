"""What both dev servers share that is not about processes or ports: names, errors, templates.

Kept apart from :mod:`.kafka` and :mod:`.clickhouse` so that neither server module knows the other.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

HOST = "127.0.0.1"

DEFAULT_DIR = ".stagewatch-dev"
DIR_ENV = "STAGEWATCH_DEV_DIR"

STOP_TIMEOUT = 20.0

_REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = Path(os.environ.get("STAGEWATCH_DEPLOY_DIR", _REPO_ROOT / "deploy" / "local"))


class DevServerError(RuntimeError):
    """A dev server could not be started, stopped or inspected.

    The message is meant for the user: it says what happened and what to do.
    """


class PortTakenError(DevServerError):
    """A port a server needs is already in use (``.port`` says which)."""

    def __init__(self, message: str, port: int):
        super().__init__(message)
        self.port = port


def resolve_dir(dir: str | os.PathLike | None = None) -> Path:
    """The dev dir: the argument, else ``$STAGEWATCH_DEV_DIR``, else ``./.stagewatch-dev``."""
    raw = dir if dir is not None else os.environ.get(DIR_ENV) or DEFAULT_DIR
    return Path(raw).expanduser().resolve()


def now_iso() -> str:
    """UTC now, to the second: the timestamps state.json records."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def render(template: Path, values: dict[str, str]) -> str:
    """Fill ``{{NAME}}`` placeholders; an unknown one is an error (a config half-filled would start wrong)."""
    text = template.read_text()
    for key, val in values.items():
        text = text.replace("{{%s}}" % key, val)
    if "{{" in text:
        start = text.index("{{")
        raise DevServerError(f"Template {template} has an unknown placeholder near {text[start:start + 40]!r}.")
    return text


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords or their hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
