"""msc.track.locks on one machine (a storage other than PostgreSQL): a tuner kept waiting for a lock says so
once, and goes on when the holder lets go; a moment's wait says nothing (tests/integration/test_locks.py:
the same on PostgreSQL)."""

import threading

import pytest

from msc.track import locks
from msc.track.locks import shared_lock

STORAGE = "sqlite:///optuna.db"


def waiter_kept(storage: str, holding: float) -> tuple[bool, bool]:
    """A second process's wait for a lock held ``holding`` seconds: (whether it was blocked while held,
    whether it got the lock afterwards)."""
    entered = threading.Event()

    def waiter():
        with shared_lock(storage, "test: registration", waiting="waiting for the other tuner"):
            entered.set()

    with shared_lock(storage, "test: registration", waiting="never printed: nobody held it"):
        thread = threading.Thread(target=waiter)
        thread.start()
        blocked = not entered.wait(holding)
    thread.join(30)
    return blocked, entered.is_set()


@pytest.mark.parametrize("holding, said", [(0.6, "waiting for the other tuner\n"), (0.05, "")])
def test_a_waiter_says_it_waits_only_when_kept_and_goes_on_after_the_holder(holding, said, project, capsys,
                                                                            monkeypatch):
    monkeypatch.setattr(locks, "QUIET_WAIT_SECONDS", 0.3)
    assert waiter_kept(STORAGE, holding) == (True, True)
    assert capsys.readouterr().err == said
