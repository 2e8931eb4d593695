"""msc.track.locks on PostgreSQL: the advisory lock that tuners on several machines share."""

import threading

import pytest
import sqlalchemy

from msc.track.locks import advisory_key, shared_lock
from tests.helpers import POSTGRES_URL, postgres_available

pytestmark = pytest.mark.postgres


def test_a_held_advisory_lock_leaves_its_session_idle_not_in_a_transaction():
    """Held through a whole registration (minutes): a session idle in a transaction that long is what a
    server's idle_in_transaction_session_timeout kills, and the lock would go with it."""
    if not postgres_available():
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    key = advisory_key("test: idle holder")
    other = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with shared_lock(POSTGRES_URL, "test: idle holder"), other.connect() as connection:
            states = connection.execute(sqlalchemy.text(
                "select a.state from pg_locks l join pg_stat_activity a using (pid) where l.locktype = 'advisory' "
                "and (l.classid::bigint << 32) | l.objid::bigint = :key"),
                {"key": key & 0xFFFFFFFFFFFFFFFF}).scalars().all()  # the key's two 32-bit halves, as pg_locks shows them
        assert states == ["idle"]
    finally:
        other.dispose()


def test_a_waiter_on_postgresql_says_it_waits_once_and_goes_on_after_the_holder(capsys):
    if not postgres_available():
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    entered = threading.Event()

    def waiter():
        with shared_lock(POSTGRES_URL, "test: registration", waiting="waiting for the other tuner"):
            entered.set()

    with shared_lock(POSTGRES_URL, "test: registration", waiting="never printed: nobody held it"):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not entered.wait(1.0)  # blocked while held
    thread.join(30)
    assert entered.is_set()
    assert capsys.readouterr().err == "waiting for the other tuner\n"
