"""msc.track.locks on one machine (a storage other than PostgreSQL): a tuner kept waiting for a lock says so
once, and goes on when the holder lets go; a moment's wait says nothing (tests/integration/test_locks.py:
the same on PostgreSQL)."""

import threading
import time

import pytest

from msc.track import locks
from msc.track.locks import shared_lock

STORAGE = "sqlite:///optuna.db"


def waiter_kept(storage: str, holding: float, tries: list) -> tuple[bool, bool]:
    """A second process's wait for a lock held ``holding`` seconds after the waiter first found it taken
    (``tries`` grows with each try that finds it taken): (whether it was blocked while held, whether it got
    the lock)."""
    entered = threading.Event()

    def waiter():
        with shared_lock(storage, "test: registration", waiting="waiting for the other tuner"):
            entered.set()

    with shared_lock(storage, "test: registration", waiting="never printed: nobody held it"):
        thread = threading.Thread(target=waiter)
        thread.start()
        deadline = time.monotonic() + 10
        while not tries and time.monotonic() < deadline:  # the waiter has found the lock taken
            time.sleep(0.01)
        blocked = not entered.wait(holding)
    thread.join(30)
    return blocked, entered.is_set()


@pytest.mark.parametrize("holding, said", [(1.5, "waiting for the other tuner\n"), (0.05, "")])
def test_a_waiter_says_it_waits_only_when_kept_and_goes_on_after_the_holder(holding, said, project, capsys,
                                                                            monkeypatch):
    tries = []  # the waiter's tries that found the lock taken

    def held(path, real=locks.held):
        taken = real(path)
        if taken:
            tries.append(path)
        return taken

    monkeypatch.setattr(locks, "held", held)
    monkeypatch.setattr(locks, "QUIET_WAIT_SECONDS", 0.5)
    assert waiter_kept(STORAGE, holding, tries) == (True, True)
    assert tries and capsys.readouterr().err == said
