"""A follower's checkpoint: where it is in which file, and everything it must not forget across a restart.

One JSON file replaced atomically (temporary file, fsync, ``os.replace``, fsync of the directory), so a
``kill -9`` at any moment leaves either the previous checkpoint or the new one.  It holds the byte offset
in the file being read (with its device, inode and a fingerprint of its first bytes, to find it again after
a rotation), each live job's state (ordinals for ids, the running attempt, the job's route) and the events
held until their job's JobAdInformation (028) event: the held events were read before the offset, so they
would be lost if they were not saved with it.
"""

from __future__ import annotations

import os
import tempfile

import msgspec

from ingest.condor.mapping import JobState
from ingest.condor.routing import _Held

CHECKPOINT_FORMAT = "stagewatch-condor-log-checkpoint/3"
#: Formats read: /1 had no file identity, /2 no held events.
CHECKPOINT_FORMATS = ("stagewatch-condor-log-checkpoint/1", "stagewatch-condor-log-checkpoint/2", CHECKPOINT_FORMAT)


class CheckpointMismatch(ValueError):
    """The checkpoint belongs to a different log path or schedd name; ids would not line up."""


class Checkpoint(msgspec.Struct, kw_only=True):
    format: str
    path: str  # the followed name
    schedd: str | None
    offset: int  # in the file being read
    head_len: int  # fingerprint of that file: sha1 of bytes [head_skip, head_skip + head_len)
    head_sha1: str
    jobs: dict[str, JobState]
    head_skip: int = 0
    dev: int | None = None  # identity of the file being read (format /1 had none)
    ino: int | None = None
    file: str | None = None  # the name it had when the checkpoint was written (informational)
    held: list[_Held] = msgspec.field(default_factory=list)  # events waiting for their job's 028 (format /3)
    newest_ts: float = 0.0  # the newest event time read (the clock of the hold bound)


_decoder = msgspec.json.Decoder(Checkpoint)
_encoder = msgspec.json.Encoder()


def load_checkpoint(path: str) -> Checkpoint | None:
    """The checkpoint at ``path``; None when there is none yet; :class:`CheckpointMismatch` when unreadable."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        ckpt = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise CheckpointMismatch(f"{path} is not a stagewatch checkpoint ({exc})") from None
    if ckpt.format not in CHECKPOINT_FORMATS:
        raise CheckpointMismatch(f"{path}: unknown checkpoint format {ckpt.format!r}")
    return ckpt


def save_checkpoint(path: str, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically and durably."""
    data = _encoder.encode(ckpt)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
