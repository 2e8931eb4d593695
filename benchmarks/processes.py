"""Starting servers on loopback and measuring processes: what the benchmark sections measure with, and
what the tests that serve a model use too. Its home is here, not in tests/: nothing outside tests/
imports the tests package, while tests may import this module as they import any of the project's code."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_memory(pid: int) -> int:
    """Proportional set size (PSS) of ``pid`` and all its descendants (DataLoader workers), bytes.

    PSS, not RSS: forked workers share the parent's pages (torch, the interpreter), and summing
    RSS would count those pages once per process.
    """
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:"))) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, StopIteration):
            continue  # the process ended between two reads
    return total


def free_port() -> int:
    """A loopback port nobody listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(args: list[str], cwd: Path, env: dict, ready_url: str, timeout: float = 300,
                   log_path: Path | None = None):
    """Start a server in its own process group, wait until ``ready_url`` answers, stop the whole
    group afterwards. Its output goes to a file (``log_path`` when given): a pipe nobody reads would
    block a chatty server."""
    import signal
    import tempfile
    import urllib.request

    with (log_path.open("w+") if log_path else tempfile.TemporaryFile(mode="w+")) as log:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    urllib.request.urlopen(ready_url, timeout=2)
                    break
                except OSError:
                    if process.poll() is not None or time.time() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"{' '.join(args[:6])} did not start: {log.read()[-3000:]}") from None
                    time.sleep(1)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def serve_model(model_uri: str, cwd: Path, env: dict, port: int, workers: int = 1):
    """``mlflow models serve`` of ``model_uri`` on loopback ``port``, as a context manager. This venv's
    bin/ goes first on PATH: mlflow starts ``uvicorn`` by name, which an unactivated venv hides."""
    env = {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}
    return running_server([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
                           "local", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                          cwd, env, f"http://127.0.0.1:{port}/ping")


def serve_guarded(model_uri: str, cwd: Path, env: dict, port: int, *options: str, log_path: Path | None = None):
    """``python -m src.serve`` (msc's guarded layer) of ``model_uri`` on loopback ``port``, with this
    worktree's code, as a context manager; ``options`` such as ``--timeout 3``."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    return running_server([sys.executable, "-m", "src.serve", "--model-uri", model_uri, "--host", "127.0.0.1",
                           "--port", str(port), *options], cwd, env, f"http://127.0.0.1:{port}/ping", log_path=log_path)


def tree_peak_rss(pid: int) -> int:
    """Peak resident memory (VmHWM) of ``pid`` and its descendants, summed, in bytes: what a burst
    between two readings cost, which the current size (``tree_memory``) no longer shows."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, StopIteration):
            continue  # the process ended between two reads
    return total
