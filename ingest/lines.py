"""Input lines of a JSON-lines file, read the same way by replay and publish.

Why one reader: a file that is not plain UTF-8 JSON lines used to give pages of dead letters (a gzip
file) or one spurious dead letter (a UTF-8 byte-order mark on the first line). Here gzip input (by its
magic bytes, whatever the name) is decompressed transparently, a BOM is stripped, and any other binary
input is refused up front with a sentence, before a line of it is counted.

Memory stays bounded whatever the input: a line longer than the contract's ``MAX_LINE_BYTES`` is not
held whole; its first ``MAX_LINE_BYTES + 1`` bytes are yielded (unstripped), which the contract rejects
as too long, and the rest of it is skipped.
"""

from __future__ import annotations

import logging
import sys
import zlib
from typing import IO, Iterator

from schemas.events import MAX_LINE_BYTES

log = logging.getLogger("stagewatch.lines")

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 8192
CHUNK_BYTES = 1 << 18  # below MAX_LINE_BYTES: most chunks take the loop without a length check

# Magic bytes of common binary formats that are not JSON lines, with a name a user recognises.
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"(\xb5/\xfd", "a zstd file"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an executable"),
    (b"\xff\xfe", "a UTF-16 text file"),
    (b"\xfe\xff", "a UTF-16 text file"),
)


class InputError(ValueError):
    """An input that cannot be JSON lines at all; the message says what it is and what to do."""


def _describe(path: str) -> str:
    return "standard input" if path == "-" else path


def _refuse_binary_start(head: bytes, path: str) -> None:
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            raise InputError(f"{_describe(path)} looks like {what}, not JSON lines; convert or decompress it "
                             f"first (only plain or gzip-compressed UTF-8 JSON lines are read).")


def _refuse_nul(chunk: bytes, offset: int, path: str) -> None:
    nul = chunk.find(b"\x00")
    if nul >= 0:
        raise InputError(f"{_describe(path)} is binary, not JSON lines (a NUL byte at offset {offset + nul} of "
                         f"its first {SNIFF_BYTES} bytes); pass a UTF-8 JSON-lines file (plain or .gz).")


def _read_chunks(f: IO[bytes]) -> Iterator[bytes]:
    """Chunks as they arrive (read1: a pipe's lines are not held back until a whole chunk is full)."""
    read = getattr(f, "read1", f.read)
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def _gunzip(chunks: Iterator[bytes], path: str) -> Iterator[bytes]:
    """Decompress gzip data (several concatenated members too), in bounded pieces."""
    d = zlib.decompressobj(31)
    pending = b""
    for data in chunks:
        data = pending + data
        pending = b""
        while data:
            try:
                out = d.decompress(data, CHUNK_BYTES)
            except zlib.error as exc:
                raise InputError(f"{_describe(path)} is a damaged gzip file ({exc}); check or re-create it.") from None
            if out:
                yield out
            if d.eof:
                rest = d.unused_data
                if not rest.strip(b"\x00"):  # trailing zero padding, as gzip(1) tolerates
                    data = b""
                elif len(rest) < 2:
                    pending = rest  # maybe the start of another member
                    data = b""
                elif rest.startswith(GZIP_MAGIC):
                    d = zlib.decompressobj(31)
                    data = rest
                else:
                    raise InputError(f"{_describe(path)} has data that is not gzip after its compressed part; "
                                     f"check or re-create it.")
            else:
                data = d.unconsumed_tail
    if not d.eof:
        # A member was started but its end never came: the file was cut short.
        raise InputError(f"{_describe(path)} is a truncated gzip file (it ends inside compressed data); the "
                         f"lines before the cut were read; re-create or re-copy the file.")


def _decoded_chunks(f: IO[bytes], path: str) -> Iterator[bytes]:
    """The file's bytes, decompressed if it is gzip, checked for other binary formats first."""
    raw = _read_chunks(f)
    first = next(raw, b"")
    while len(first) < 8:  # a pipe may deliver a few bytes at a time: enough to recognise a magic
        more = next(raw, b"")
        if not more:
            break
        first += more
    if first.startswith(GZIP_MAGIC):
        def again() -> Iterator[bytes]:
            yield first
            yield from raw
        chunks = _gunzip(again(), path)
    else:
        if path.endswith(".gz") and first:
            raise InputError(f"{path} is named .gz but is not gzip-compressed; rename it or pass the right file.")
        chunks = _chain(first, raw)
    sniffed = 0
    for i, chunk in enumerate(chunks):
        if i == 0:
            if chunk.startswith(UTF8_BOM):
                chunk = chunk[len(UTF8_BOM):]
            _refuse_binary_start(chunk, path)
        if sniffed < SNIFF_BYTES:
            _refuse_nul(chunk[:SNIFF_BYTES - sniffed], sniffed, path)
            sniffed += len(chunk)
        yield chunk


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def iter_input_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, stripped line) for every non-blank line of ``path`` ('-' is stdin).

    Line numbers count every line, blank ones included, so they match an editor's. A UTF-8 BOM at the
    very start is dropped; gzip input is decompressed (whatever the name); other binary input raises
    InputError before its first line is yielded. Lines are bytes: decoding them is the contract's job.
    """
    f: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")
    limit = MAX_LINE_BYTES + 1
    n = 0
    pending = b""
    overlong = False  # the current line already passed the limit: skip up to its newline
    try:
        for chunk in _decoded_chunks(f, path):
            parts = chunk.split(b"\n")
            last = parts.pop()
            if parts:
                if overlong:
                    parts[0] = b""  # the rest of the overlong line: already yielded as its prefix
                    n += 1
                    overlong = False
                    rest = parts[1:]
                else:
                    parts[0] = pending + parts[0]
                    rest = parts
                if len(chunk) + len(pending) <= MAX_LINE_BYTES:  # no line here can be too long: the fast loop
                    for n, line in enumerate(rest, n + 1):
                        line = line.strip()
                        if line:
                            yield n, line
                else:
                    for n, line in enumerate(rest, n + 1):
                        if len(line) > MAX_LINE_BYTES:
                            yield n, line[:limit]
                            continue
                        line = line.strip()
                        if line:
                            yield n, line
                pending = b""
            if not overlong:
                pending += last
                if len(pending) > MAX_LINE_BYTES:
                    yield n + 1, pending[:limit]
                    pending = b""
                    overlong = True
        if overlong:
            n += 1
        elif pending:
            n += 1
            line = pending.strip()
            if line:
                yield n, line
    finally:
        if f is not sys.stdin.buffer:
            f.close()
