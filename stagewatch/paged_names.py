"""Which names a replay paged out of a stage it started empty, in 8 bytes a name.

Why: the replay pages entities that did not change out of memory (processors.stage.StageState.page_out)
so that memory is bounded by the active entities. For a stage this process started empty it remembered
every paged-out name (and each file's links) so that a later event of one of them is loaded back without
asking the store whether the name exists. Kept as Python strings and tuples, that memory grew with the
history again: 83,916 job and 343,179 file names, up to 68 MiB, after a 100,000-job replay (ten times
that for a million). Here a name is its 64-bit hash in a sorted array: a name paged out is always found;
another name with the same hash (about one in 2**64 per pair) is found too and costs one store lookup
that loads nothing. The links of a file are asked of the store when its group is loaded (as for a stage
that started from a stored row).

The hash is Python's own ``hash(str)``: randomised per process, stable within one, and the set never
leaves the process.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Iterable


class PagedNames:
    """A set of names that only grows, 8 bytes a name (sorted hashes); ``in`` may say yes for a name never
    added with a chance of about n / 2**64, never no for one added."""

    __slots__ = ("_hashes",)

    def __init__(self) -> None:
        self._hashes = array("q")

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, name: str) -> bool:
        h, hashes = hash(name), self._hashes
        i = bisect_left(hashes, h)
        return i < len(hashes) and hashes[i] == h

    def update(self, names: Iterable[str]) -> None:
        """Add names (a name already there is not added again)."""
        new = {hash(n) for n in names}
        if not new:
            return
        hashes = self._hashes
        if hashes:
            new = {h for h in new if not self._has(h)}
            if not new:
                return
            self._hashes = array("q", sorted([*hashes, *new]))
        else:
            self._hashes = array("q", sorted(new))

    def _has(self, h: int) -> bool:
        hashes = self._hashes
        i = bisect_left(hashes, h)
        return i < len(hashes) and hashes[i] == h
