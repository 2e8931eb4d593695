"""Atomic file writes: a reader sees the old file or the whole new one, never half of one. An output
path that cannot be written is a sentence naming it, checked before a command's work where possible
(``check_output_file``, ``check_output_folder``) and again when the write fails."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterator

from msc.core.errors import UserError

# What the user can fix about a path: no permission, a read-only file system, a folder where a file
# goes, a file where a folder goes. A full disk (ENOSPC) has a sentence of its own (msc.core.errors).
UNWRITABLE = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EROFS: "the file system is read-only", errno.EISDIR: "it is a folder",
              errno.ENOTDIR: "a part of it is a file, not a folder"}


def unwritable(path: Path, reason: str, flag: str) -> UserError:
    return UserError(f"{flag} {path} cannot be written: {reason}; choose another path")


def first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what creating it would write into)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(folder: str | os.PathLike, flag: str) -> None:
    """Refuse, with a sentence naming ``flag``, a folder that cannot be created or written into: an
    existing file, a file among its parents, or a read-only or forbidden place."""
    check_creatable(Path(folder), Path(folder), flag)


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """Refuse, with a sentence naming ``flag``, an output file path that cannot be written: an existing
    folder, or a parent that cannot be created or written into."""
    path = Path(path)
    if path.is_dir():
        raise unwritable(path, "it is a folder; name a file in it", flag)
    check_creatable(path, path.parent, flag)


def check_creatable(named: Path, folder: Path, flag: str) -> None:
    """The check of ``folder``, which ``named`` (the path the user gave) needs."""
    found = first_existing(folder.absolute())
    if not found.is_dir():
        where = "it is a file" if found == named.absolute() else f"{found} is a file, not a folder"
        raise unwritable(named, where, flag)
    if not os.access(found, os.W_OK | os.X_OK):  # access(2) also answers EROFS for a read-only mount
        raise unwritable(named, f"{found} is read-only or not writable by this user", flag)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; see atomic_write_bytes."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``; a path
    that cannot be written is a UserError naming it (``UNWRITABLE``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        if error.errno in UNWRITABLE:
            raise unwritable(path, UNWRITABLE[error.errno], "the output") from None
        raise
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary readable files
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in UNWRITABLE:  # os.replace onto a folder: EISDIR
            raise unwritable(path, UNWRITABLE[error.errno], "the output") from None
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes on this machine.

    ``wait=False`` raises BlockingIOError at once when another process holds it. The kernel
    releases the lock when its holder dies, SIGKILL included.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def held(path: str | os.PathLike) -> bool:
    """Whether a process holds ``file_lock(path)`` now. Creates nothing: a path that is not there was never
    locked, and a reader may lack the right to write beside it. Probes with a shared lock, which a read-only
    descriptor may take (on NFS too) and which two probing readers grant each other; a lock it cannot probe
    (no right to read the file) counts as held, so that the caller waits as it would for a writer."""
    try:
        handle = open(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: a writer holds it
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
