"""Input lines: one reader for replay and publish (gzip, BOM, binary refused, bounded lines)."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pytest

from ingest.lines import SNIFF_BYTES, InputError, iter_input_lines
from schemas.events import MAX_LINE_BYTES

TEXT = b'{"a":1}\r\n\n   \n  {"b":2}  \n{"c":3}'  # CRLF, blank lines, padding, no final newline
EXPECTED = [(1, b'{"a":1}'), (4, b'{"b":2}'), (5, b'{"c":3}')]


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_plain_lines_numbered_like_an_editor(tmp_path):
    assert list(iter_input_lines(_write(tmp_path, "a.jsonl", TEXT))) == EXPECTED


def test_utf8_bom_is_stripped_from_the_first_line_only(tmp_path):
    bom = b"\xef\xbb\xbf"
    got = list(iter_input_lines(_write(tmp_path, "bom.jsonl", bom + TEXT + b"\n" + bom + b"x")))
    assert got == EXPECTED + [(6, bom + b"x")]  # a BOM inside the file is data, left to the contract


@pytest.mark.parametrize("name", ["a.jsonl.gz", "a.jsonl", "no-extension"])
def test_gzip_is_read_transparently_whatever_the_name(tmp_path, name):
    assert list(iter_input_lines(_write(tmp_path, name, gzip.compress(b"\xef\xbb\xbf" + TEXT)))) == EXPECTED


def test_concatenated_gzip_members_are_all_read(tmp_path):
    data = gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"b":2}\n')
    assert list(iter_input_lines(_write(tmp_path, "two.gz", data))) == [(1, b'{"a":1}'), (2, b'{"b":2}')]


def test_big_gzip_lines_across_chunks(tmp_path):
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 5000)) for i in range(3000)]
    got = list(iter_input_lines(_write(tmp_path, "big.gz", gzip.compress(b"\n".join(lines)))))
    assert got == list(enumerate(lines, 1))


@pytest.mark.parametrize("head,what", [
    (b"PK\x03\x04rest", "zip"), (b"BZh91AY", "bzip2"), (b"\xfd7zXZ\x00\x00", "xz"),
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xfe{\x00", "UTF-16"), (b"%PDF-1.4", "PDF"),
])
def test_known_binary_formats_are_refused_up_front_with_a_sentence(tmp_path, head, what):
    with pytest.raises(InputError, match=what) as info:
        next(iter_input_lines(_write(tmp_path, "x.jsonl", head + b"\n" * 10)))
    assert str(info.value).endswith(".")


def test_nul_bytes_in_the_first_8_kib_refuse_the_file_before_any_line(tmp_path):
    data = b'{"a":1}\n' * 100 + b"\x00\x01\x02"
    assert len(data) < SNIFF_BYTES
    it = iter_input_lines(_write(tmp_path, "bin.jsonl", data))
    with pytest.raises(InputError, match="NUL byte at offset 800"):
        next(it)


def test_binary_inside_gzip_is_refused_too(tmp_path):
    with pytest.raises(InputError, match="binary"):
        list(iter_input_lines(_write(tmp_path, "bin.gz", gzip.compress(b"\x00" * 100))))


def test_gz_name_without_gzip_content_is_refused(tmp_path):
    with pytest.raises(InputError, match="not gzip-compressed"):
        list(iter_input_lines(_write(tmp_path, "plain.gz", TEXT)))


def test_truncated_gzip_says_so_after_the_lines_before_the_cut(tmp_path):
    data = gzip.compress(b"".join(b'{"n":%d}\n' % i for i in range(20000)))
    got: list[tuple[int, bytes]] = []
    with pytest.raises(InputError, match="truncated gzip"):
        for item in iter_input_lines(_write(tmp_path, "cut.gz", data[: len(data) // 2])):
            got.append(item)
    assert got and got == [(i + 1, b'{"n":%d}' % i) for i in range(len(got))]


def test_damaged_gzip_is_an_input_error(tmp_path):
    data = bytearray(gzip.compress(b'{"a":1}\n' * 1000))
    data[20:40] = b"\xff" * 20
    with pytest.raises(InputError, match="gzip"):
        list(iter_input_lines(_write(tmp_path, "bad.gz", bytes(data))))


def test_overlong_line_is_bounded_and_the_next_lines_keep_their_numbers(tmp_path):
    """A line over MAX_LINE_BYTES is not held whole: its first MAX+1 bytes stand for it (the contract
    refuses them as too long), and the following lines are read and numbered as usual."""
    huge = b"{" + b" " * (3 * MAX_LINE_BYTES) + b"}"
    got = list(iter_input_lines(_write(tmp_path, "huge.jsonl", b'{"a":1}\n' + huge + b'\n{"b":2}\n' + huge)))
    assert [n for n, _ in got] == [1, 2, 3, 4]
    assert got[0][1] == b'{"a":1}' and got[2][1] == b'{"b":2}'
    assert len(got[1][1]) == MAX_LINE_BYTES + 1 and len(got[3][1]) == MAX_LINE_BYTES + 1


def test_a_line_of_exactly_the_limit_is_kept_whole(tmp_path):
    line = b'"' + b"x" * (MAX_LINE_BYTES - 2) + b'"'
    assert list(iter_input_lines(_write(tmp_path, "edge.jsonl", line + b"\n" + line))) == [(1, line), (2, line)]


def test_stdin_is_dash(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(gzip.compress(TEXT)))))
    assert list(iter_input_lines("-")) == EXPECTED


def test_the_file_is_closed_even_when_the_caller_stops_early(tmp_path, monkeypatch):
    opened: list = []
    real_open = open

    def spy(*a, **kw):
        f = real_open(*a, **kw)
        opened.append(f)
        return f

    monkeypatch.setattr("builtins.open", spy)
    it = iter_input_lines(_write(tmp_path, "a.jsonl", TEXT))
    next(it)
    it.close()
    assert opened and all(f.closed for f in opened)


@pytest.mark.parametrize("extra", [1, 10, 1000, 200_000, 300_000])
@pytest.mark.parametrize("gz", [False, True])
def test_lines_just_over_the_limit_are_cut_wherever_the_chunks_end(tmp_path, extra, gz):
    """However the line falls across read chunks, an overlong line is cut to MAX+1 bytes and the
    next lines keep their numbers."""
    long = b"x" * (MAX_LINE_BYTES + extra)
    data = b'{"a":1}\n' + long + b'\n{"b":2}\n' + b"y" * MAX_LINE_BYTES + b"\n"
    got = list(iter_input_lines(_write(tmp_path, "l.gz" if gz else "l.jsonl", gzip.compress(data) if gz else data)))
    assert [(n, len(line)) for n, line in got] == [(1, 7), (2, MAX_LINE_BYTES + 1), (3, 7), (4, MAX_LINE_BYTES)]
