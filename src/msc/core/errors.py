"""Failures reach a user as one sentence on stderr and a non-zero exit, never as a traceback.

A ``UserError`` (something the user can fix) is its own sentence, exit status 2, and so is a full
disk. Any other exception is a failure the user did not cause: one sentence names the command and
the step it was in (``step``), the full traceback goes to a log file under ``paths.logs`` (``logs/``
until the command has read its params, ``log_crashes_in``) whose path the sentence names, and the exit
status is 1. A library that logs a traceback while the command runs
(Optuna's failed trial, MLflow's failed write) has it written to the same file instead of the
console (``TracebacksToLog``). ``MSC_DEBUG=1`` shows every traceback in place instead.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator


class UserError(Exception):
    """Something the user can fix: bad data, bad params, a missing backbone or model.

    The message says what is wrong, where (file, line, guid or key) and how to fix it.
    """


EXIT_USER_ERROR = 2
EXIT_FAILURE = 1
LOG_DIR = Path("logs")  # before a command has read paths.logs from its params
_crash_logs = [LOG_DIR]  # the folder of this process's crash logs; the stage sets it (log_crashes_in)


def log_crashes_in(folder: str | os.PathLike) -> None:
    """Write this command's crash log, if any, into ``folder`` (params.yaml's ``paths.logs``)."""
    _crash_logs[0] = Path(folder)


@contextlib.contextmanager
def step(doing: str) -> Iterator[None]:
    """Name what the command does inside this block, e.g. ``with step("registering the best model")``;
    an unexpected failure inside it says so in its sentence (the innermost step wins)."""
    try:
        yield
    except Exception as error:
        if not hasattr(error, "msc_step"):
            error.msc_step = doing
        raise


class CommandLog:
    """``<paths.logs>/<command>-<time>-<pid>.log``, created at the first write: tracebacks of one command run."""

    def __init__(self, command: str):
        self.command = command
        self.path: Path | None = None

    def write(self, details: str) -> Path:
        """Append ``details``; returns the path. Raises OSError when it cannot be written (a full disk)."""
        if self.path is None:
            folder = _crash_logs[0]
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self.command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(f"python -m src.{self.command} {' '.join(sys.argv[1:])}\n\n")
            self.path = path
        with self.path.open("a") as log:
            log.write(details + "\n")
        return self.path


class TracebacksToLog:
    """While installed, a log record that carries a traceback, from any library, goes whole to the
    command's log file and not to the console: a full disk made MLflow and Optuna print 15 tracebacks
    before the command's own sentence (issue 33). A record factory sees every logger's records, and a
    filter on the console handlers (the ones the libraries set up when imported, found when the first
    such record comes) drops them there."""

    def __init__(self, log: CommandLog):
        self.log = log
        self.previous = logging.getLogRecordFactory()

    def __enter__(self) -> "TracebacksToLog":
        logging.setLogRecordFactory(self.make_record)
        return self

    def __exit__(self, *exc) -> None:
        logging.setLogRecordFactory(self.previous)

    def make_record(self, *args, **kwargs) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if record.exc_info and record.exc_info[0] is not None:
            try:
                self.log.write(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s").format(record))
            except OSError:  # the disk is full: the traceback is lost, the command's sentence says why
                pass
            record.msc_traceback_logged = True
            self.filter_console_handlers()
        return record

    @staticmethod
    def filter_console_handlers() -> None:
        loggers = [logging.getLogger()] + [item for item in logging.Logger.manager.loggerDict.values()
                                           if isinstance(item, logging.Logger)]
        for handler in {handler for logger in loggers for handler in logger.handlers}:
            console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            if console and not any(isinstance(f, DropLoggedTracebacks) for f in handler.filters):
                handler.addFilter(DropLoggedTracebacks())


class DropLoggedTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "msc_traceback_logged", False)


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, a scheduler ending the job) into a KeyboardInterrupt, so it ends the
    command as Ctrl-C does: with its clean-up and one sentence, never a silent death."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def disk_full(error: BaseException) -> str | None:
    """What ran out of space, when ``error`` or an error it was raised from is a full disk (ENOSPC, or
    SQLite's "database or disk is full" through SQLAlchemy and MLflow), else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return str(error.filename or error.strerror)
        if "database or disk is full" in str(error) or "No space left on device" in str(error):
            return (str(error).splitlines() or [""])[0][:200]
        error = error.__cause__ or error.__context__
    return None


def cli(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a module's ``main(argv)`` so a UserError becomes its message and exit status 2, and any
    other exception one sentence, a log file and exit status 1."""
    command = Path(main.__code__.co_filename).stem  # "tune"; __module__ is "__main__" under python -m

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        log = CommandLog(command)
        try:
            if os.environ.get("MSC_DEBUG") == "1":
                return main(argv) or 0
            with TracebacksToLog(log):
                return main(argv) or 0
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM where ``interrupt_on_sigterm`` is set
            print(f"interrupted: {interrupt}" if str(interrupt) else "interrupted", file=sys.stderr)
            return 130
        except Exception as error:  # noqa: BLE001 - the last line of defence: a sentence, not a traceback
            if os.environ.get("MSC_DEBUG") == "1":
                raise
            doing = getattr(error, "msc_step", "running")
            if (full := disk_full(error)) is not None:
                print(f"error: `python -m src.{command}` stopped while {doing}: no space left on the device ({full}). "
                      "Free some space and run the same command again: a study resumes where it stopped, and a "
                      "cache or output is never left half-written.", file=sys.stderr)
                return EXIT_USER_ERROR  # the user frees the space; nothing in msc failed
            try:
                where = f"the full traceback is in {log.write(traceback.format_exc())}"
            except OSError as log_error:
                where = f"no log could be written ({log_error})"
            reason = (str(error).splitlines() or [""])[0][:300]
            print(f"error: `python -m src.{command}` failed unexpectedly while {doing}: {type(error).__name__}"
                  f"{': ' + reason if reason else ''}. This is not something your input caused; {where} "
                  "(set MSC_DEBUG=1 to see it here).", file=sys.stderr)
            return EXIT_FAILURE

    return wrapper
