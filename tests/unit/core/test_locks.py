"""msc.core.files.held: how a reader asks whether a writer holds a file_lock, without taking it or creating
anything (the feature cache's readers, msc/features/cache.py)."""

import fcntl
import os

from msc.core.files import file_lock, held


def test_held_answers_for_the_writers_lock_and_creates_nothing(tmp_path):
    lock = tmp_path / "features.lock"
    assert not held(lock) and not lock.exists(), "never locked: not held, and no file made"
    with file_lock(lock):
        assert held(lock)
    assert not held(lock)


def test_a_reader_probing_does_not_look_like_a_writer_to_another_reader(tmp_path):
    """The probe takes a shared lock: two readers probing at once see each other as no writer."""
    lock = tmp_path / "features.lock"
    lock.touch()
    with open(lock) as reader:
        fcntl.flock(reader, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another reader, mid-probe
        assert not held(lock)


def test_a_lock_it_cannot_read_counts_as_held(tmp_path, monkeypatch):
    """No right to open the lock file: the caller waits as it would for a writer, it does not crash."""
    lock = tmp_path / "features.lock"
    lock.touch()

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    monkeypatch.setattr("builtins.open", refused)
    assert held(lock)
