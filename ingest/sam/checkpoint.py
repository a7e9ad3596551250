"""What a SAM poller remembers between polls and across restarts (one JSON file, replaced atomically).

* ``emitted``: event_ids already written and acknowledged (not emitted again: a re-poll costs nothing
  downstream);
* ``pending``: events whose ts was fixed (first seen) but whose write was not yet acknowledged. They
  are saved *before* they are written, so after a crash (even ``kill -9``) they are written again with
  the same ts: exact duplicates, which count once, never a conflicting second copy;
* ``children``: outputs whose metadata (parents, create_date) was read (never read again), and
  ``declared``/``located``: which of them have an output_declared / output_located event, so later
  polls ask SAM for the locations of the declared-but-unlocated ones only.

The identity (SAM URL, definition, campaign, stage, output dims) is checked on load: a checkpoint of
another source is refused rather than silently mixed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.sam.http import SamError

log = logging.getLogger("stagewatch.sam.checkpoint")
VERSION = 1


class SamCheckpointMismatch(SamError):
    """The checkpoint belongs to another SAM source."""


@dataclass
class SamCheckpoint:
    path: Path | None
    identity: dict[str, Any]
    emitted: set[str] = field(default_factory=set)
    pending: list[dict[str, Any]] = field(default_factory=list)  # encoded events (JSON objects)
    children: set[str] = field(default_factory=set)
    declared: set[str] = field(default_factory=set)
    located: set[str] = field(default_factory=set)
    polls: int = 0

    @classmethod
    def load(cls, path: Path | None, identity: dict[str, Any]) -> "SamCheckpoint":
        if path is None or not path.exists():
            return cls(path, identity)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SamError(f"Cannot read the checkpoint {path} ({exc}); move it away to start over (events "
                           "already written are then written again, with new first-seen times).") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise SamError(f"{path} is not a stagewatch SAM checkpoint (version {VERSION}); pass another "
                           "--checkpoint.")
        if data.get("identity") != identity:
            theirs = data.get("identity")
            raise SamCheckpointMismatch(f"The checkpoint {path} belongs to another SAM source ({theirs}), not "
                                        f"{identity}; pass another --checkpoint or the original options.")
        return cls(path, identity, emitted=set(data.get("emitted", ())), pending=list(data.get("pending", ())),
                   children=set(data.get("children", ())), declared=set(data.get("declared", ())),
                   located=set(data.get("located", ())), polls=int(data.get("polls", 0)))

    def save(self) -> None:
        """Write the whole state under a temporary name, fsync, rename: a crash leaves the old or the new."""
        if self.path is None:
            return
        data = {"version": VERSION, "identity": self.identity, "polls": self.polls,
                "emitted": sorted(self.emitted), "pending": self.pending, "children": sorted(self.children),
                "declared": sorted(self.declared), "located": sorted(self.located)}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise SamError(f"Cannot write the checkpoint {self.path} ({exc.strerror or exc}); pass --checkpoint "
                           "with a path you can write.") from None
        finally:
            if tmp.exists():
                tmp.unlink()
