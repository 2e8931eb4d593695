"""Locks shared by every process that works on one Optuna storage, on one machine or on many.

Tuners on several machines share nothing that locks but the study's database. On PostgreSQL a lock
is a session advisory lock in that database, released when the session ends, a killed process's
included; for any other storage, a file lock in the project root, which serves one machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from msc.core.files import file_lock, held
from msc.core.paths import project_root


def advisory_key(purpose: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock``, the same in every process for one purpose."""
    return int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "big", signed=True)


def machine_lock(purpose: str) -> Path:
    """The file that locks ``purpose`` among the processes of this machine (a storage other than PostgreSQL)."""
    return project_root() / ".locks" / hashlib.sha256(purpose.encode()).hexdigest()[:16]


QUIET_WAIT_SECONDS = 1.0  # tuners starting together wait a moment for each other: not worth a line


def said_while_waiting(try_once: Callable[[], bool], waiting: str) -> bool:
    """Try ``try_once`` for QUIET_WAIT_SECONDS; print ``waiting`` (stderr) if it still fails. Whether it got in."""
    if not waiting:
        return False  # nothing to say: the caller just waits
    deadline = time.monotonic() + QUIET_WAIT_SECONDS
    while not try_once():
        if time.monotonic() >= deadline:
            print(waiting, file=sys.stderr, flush=True)
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def shared_lock(storage: str, purpose: str, waiting: str = "") -> Iterator[None]:
    """Hold the lock named ``purpose`` among all processes using ``storage`` (an RDB URL). ``waiting``: the
    sentence printed (stderr) when another process keeps it for more than QUIET_WAIT_SECONDS, so that a wait
    of minutes is not silent."""
    if not storage.startswith("postgresql"):
        path = machine_lock(purpose)
        said_while_waiting(lambda: not held(path), waiting)
        with file_lock(path):
            yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    key = {"key": advisory_key(purpose)}
    # Autocommit: an advisory lock belongs to the session, not a transaction, and a connection left idle in a
    # transaction for a whole registration is what a server's idle_in_transaction_session_timeout kills.
    engine = sqlalchemy.create_engine(storage, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            def try_once() -> bool:
                return connection.execute(sqlalchemy.text("select pg_try_advisory_lock(:key)"), key).scalar()

            if not said_while_waiting(try_once, waiting):
                connection.execute(sqlalchemy.text("select pg_advisory_lock(:key)"), key)
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("select pg_advisory_unlock(:key)"), key)
    finally:
        engine.dispose()
