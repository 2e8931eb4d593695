"""msc.track.locks on one machine (a storage other than PostgreSQL): a tuner that must wait for a lock says
so once, and goes on when the holder lets go (tests/integration/test_locks.py: the same on PostgreSQL)."""

import threading

from msc.track.locks import shared_lock

STORAGE = "sqlite:///optuna.db"


def test_a_waiter_says_it_waits_once_and_goes_on_after_the_holder(project, capsys):
    entered = threading.Event()

    def waiter():
        with shared_lock(STORAGE, "test: registration", waiting="waiting for the other tuner"):
            entered.set()

    with shared_lock(STORAGE, "test: registration", waiting="never printed: nobody held it"):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not entered.wait(0.5)  # blocked while held
    thread.join(10)
    assert entered.is_set()
    assert capsys.readouterr().err == "waiting for the other tuner\n"
