"""SAM dimensions strings that select exactly a list of files (`missing-files --format samweb`).

A recovery submission needs a SAM dataset definition of the files without a located output; a
definition is a dimensions string, and `file_name a, b, c` selects exactly the files named.

Why chunks, and why 1,024 characters: samweb_client (github.com/illingwo/sam-web-client,
python/samweb_client/files.py, `_callDimensions`) sends a dimensions string in the URL of a GET
request when it is at most 1,024 characters, and only longer ones in a POST body; SAM web servers and
the proxies in front of them limit URL lengths, and older clients always use GET. So by default each
printed string is at most 1,024 characters (one per line: `samweb list-files "$(sed -n 1p dims.txt)"`,
`samweb create-definition recover_1 "$(sed -n 1p dims.txt)"`), a list of 310 files giving a few
lines. `--max-chars` raises the limit for a client that POSTs (create-definition always does).

Names: a plain file name (letters, digits and `._-+`) is written as is; any other name is put in single
quotes. A name SAM's dimension grammar cannot carry exactly (quotes, backslashes, wildcards `%` `*`,
control characters, a comma or a space at an end) is not put in any string: `dims_strings` returns
those names apart, so the caller says so instead of selecting the wrong files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

DEFAULT_MAX_CHARS = 1024
"""samweb_client's GET/POST switch: dimensions strings up to this length travel in the URL."""

PREFIX = "file_name "
SEPARATOR = ", "
_PLAIN = re.compile(r"[A-Za-z0-9._+\-]+")
_UNSAFE = re.compile(r"['\"\\%*\x00-\x1f\x7f]")


def quote(name: str) -> str | None:
    """`name` as a dimensions value, or None when no dimensions value selects exactly it."""
    if not name or _UNSAFE.search(name) or name != name.strip():
        return None
    if _PLAIN.fullmatch(name):
        return name
    return f"'{name}'"


@dataclass
class Dims:
    """The dimensions strings (each at most max_chars long) and the names no string can select."""
    strings: list[str] = field(default_factory=list)
    unselectable: list[str] = field(default_factory=list)


def dims_strings(names: Iterable[str], max_chars: int = DEFAULT_MAX_CHARS) -> Dims:
    """Dimensions strings `file_name a, b, ...` that together select exactly `names`.

    Each string is at most `max_chars` characters; a single name too long for that is a string of its
    own (it cannot be split: SAM would then select other files), longer than the limit.
    """
    if max_chars < len(PREFIX) + 1:
        raise ValueError(f"max_chars must be at least {len(PREFIX) + 1}")
    out = Dims()
    current: list[str] = []
    length = len(PREFIX)
    for name in sorted(set(names)):
        value = quote(name)
        if value is None:
            out.unselectable.append(name)
            continue
        extra = len(value) + (len(SEPARATOR) if current else 0)
        if current and length + extra > max_chars:
            out.strings.append(PREFIX + SEPARATOR.join(current))
            current, length = [], len(PREFIX)
            extra = len(value)
        current.append(value)
        length += extra
    if current:
        out.strings.append(PREFIX + SEPARATOR.join(current))
    return out
