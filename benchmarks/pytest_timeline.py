"""A pytest plugin that writes, per process (xdist's controller and each worker), when it configured,
collected, started its first test, finished its last, finished its session and reached exit, in seconds
since ``TIMELINE_START``: where a test run's wall time goes besides the tests.

    TIMELINE_START=$(date +%s.%N) python -m pytest -n auto -q -p benchmarks.pytest_timeline
    cat "${TIMELINE_DIR:-/tmp}"/timeline-*.txt    # one line per process: ctl, gw0, gw1
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

START = float(os.environ.get("TIMELINE_START", time.time()))
PROCESS = os.environ.get("PYTEST_XDIST_WORKER", "ctl")
MARKS: dict[str, float] = {"started": time.time()}


def pytest_configure(config):
    MARKS.setdefault("configured", time.time())


def pytest_collection_finish(session):
    MARKS["collected"] = time.time()


def pytest_runtest_logstart(nodeid, location):
    MARKS.setdefault("first_test", time.time())


def pytest_runtest_logfinish(nodeid, location):
    MARKS["last_test"] = time.time()


def pytest_sessionfinish(session):
    MARKS["session_finished"] = time.time()


@atexit.register
def write_marks() -> None:
    MARKS["exit"] = time.time()
    line = " ".join(f"{name}={moment - START:.1f}" for name, moment in MARKS.items())
    (Path(os.environ.get("TIMELINE_DIR", "/tmp")) / f"timeline-{PROCESS}.txt").write_text(line + "\n")
