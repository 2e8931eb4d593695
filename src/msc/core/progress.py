"""Progress of a long step: rich's bars on a terminal, else a printed line at least every
``MSC_PROGRESS_SECONDS`` seconds (default 30) with done/total, the time spent and an estimate of the
time left, for logs where no terminal shows a bar (``dvc exp run``, CI, nohup).

Both have rich Progress's two calls, ``add_task(description, total)`` and ``advance(task, n)``, and
are context managers: ``with progress_bars() as bars: task = bars.add_task("texts", 900); ...``.
"""

from __future__ import annotations

import os
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

ENV_INTERVAL = "MSC_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def progress_bars(console: Console | None = None) -> Bars:
    """Bars on a terminal, else ProgressLines."""
    console = console or Console()
    if console.is_terminal:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console)
    return ProgressLines()


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressLines:
    """Without a terminal: a line when a task starts and ends, and one every ``interval`` seconds in
    between from a background thread (so a single unit longer than the interval still shows life)."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval if interval is not None else float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL))
        self.tasks: list[dict] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True, name="msc-progress")

    def __enter__(self) -> ProgressLines:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        for task in self.tasks:
            if exc[0] is None and not task["ended"]:
                self._print(task)

    def add_task(self, description: str, total: float, completed: float = 0) -> int:
        """A task ``completed`` of ``total`` already (a resumed study): the estimate counts what this run did."""
        with self.lock:
            for task in self.tasks:  # rich keeps earlier bars; a line per task is enough here
                if not task["ended"]:
                    task["ended"] = True
                    self._print(task)
            self.tasks.append({"description": description, "total": total, "done": completed, "before": completed,
                               "started": time.monotonic(), "ended": False})
            self._print(self.tasks[-1])
            return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        with self.lock:
            task = self.tasks[task_id]
            task["done"] += advance
            if task["done"] >= task["total"] and not task["ended"]:
                task["ended"] = True
                self._print(task)

    def _tick(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                for task in self.tasks:
                    if not task["ended"]:
                        self._print(task)

    @staticmethod
    def _print(task: dict) -> None:
        done, total, now_done = task["done"], task["total"], task["done"] - task["before"]
        spent = time.monotonic() - task["started"]
        if done >= total:
            estimate = "done"
        elif now_done:
            estimate = f"about {duration(spent / now_done * (total - done))} left"
        else:
            estimate = "estimate after the first"
        share = f" ({done / total:.0%})" if total else ""
        print(f"{task['description']}: {done:g}/{total:g}{share}, {duration(spent)} spent, {estimate}", flush=True)


Bars = Progress | ProgressLines  # what progress_bars returns
