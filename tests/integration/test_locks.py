"""msc.track.locks on PostgreSQL: the advisory lock that tuners on several machines share."""

import pytest
import sqlalchemy

from msc.track import locks
from msc.track.locks import advisory_key, shared_lock
from tests.helpers import POSTGRES_URL, postgres_available
from tests.unit.track.test_locks import waiter_kept

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


@pytest.mark.parametrize("holding, said", [(1.5, "waiting for the other tuner\n"), (0.05, "")])
def test_a_waiter_on_postgresql_says_it_waits_only_when_kept_and_goes_on_after_the_holder(holding, said, capsys,
                                                                                          monkeypatch):
    if not postgres_available():
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    tries = []  # the waiter's tries that found the lock taken
    real = locks.said_while_waiting

    def counted(try_once, waiting):
        def attempt():
            got = try_once()
            if not got:
                tries.append(1)
            return got

        return real(attempt, waiting)

    monkeypatch.setattr(locks, "said_while_waiting", counted)
    monkeypatch.setattr(locks, "QUIET_WAIT_SECONDS", 0.5)
    assert waiter_kept(POSTGRES_URL, holding, tries) == (True, True)
    assert capsys.readouterr().err == said
