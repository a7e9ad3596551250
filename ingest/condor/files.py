"""Log files held open by descriptor, and the fingerprint that recognises a file after a rotation."""

from __future__ import annotations

import hashlib
import os
import stat

_SEPARATOR = b"\n...\n"

def _fd_path(fd: int) -> str:
    """A name that opens the very file behind ``fd`` whatever it is called now, even once deleted."""
    return f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else f"/dev/fd/{fd}"


class _File:
    """One log file held open: renames (rotation) and deletion do not change what it reads.

    htcondor2 needs a path; :attr:`path` names the open descriptor, so a rotation between two reads can
    never make the follower read one file's bytes at another file's offsets."""

    __slots__ = ("fd", "ident", "name")

    def __init__(self, fd: int, name: str) -> None:
        st = os.fstat(fd)
        self.fd = fd
        self.ident = (st.st_dev, st.st_ino)
        self.name = name  # where it was found, for messages (it may have been renamed since)

    @classmethod
    def open(cls, name: str) -> _File | None:
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            return cls(fd, name)
        except BaseException:
            os.close(fd)
            raise

    @property
    def path(self) -> str:
        return _fd_path(self.fd)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _header_end(fd: int) -> int:
    """Length of a global event log's header event (``008 ... Global JobLog: ... sequence=...``), else 0.

    HTCondor rewrites that header in place (its size and event count) when it rotates the file, so the
    fingerprint that recognises a file after a rotation starts after it."""
    head = os.pread(fd, 4096, 0)
    if head.startswith(b"008 (") and b"Global JobLog:" in head.split(b"\n", 1)[0]:
        i = head.find(_SEPARATOR)
        if i >= 0:
            return i + len(_SEPARATOR)
    return 0


def _fingerprint(fd: int, skip: int, n: int) -> tuple[int, str]:
    data = os.pread(fd, n, skip) if n > 0 else b""
    return len(data), hashlib.sha1(data).hexdigest()
