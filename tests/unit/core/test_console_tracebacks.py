"""A library's logged traceback goes to the command's log file, not the console; a full disk is exit
status 2 with its sentence alone (issue 33, kind 7)."""

from __future__ import annotations

import io
import logging

from msc.core import errors
from msc.core.errors import CommandLog, TracebacksToLog, cli


def console_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(name)
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    return logger, stream


def test_a_logged_traceback_goes_to_the_log_file_and_a_plain_warning_stays(tmp_path, monkeypatch):
    monkeypatch.setattr(errors, "_crash_logs", [tmp_path / "logs"])
    logger, console = console_logger("optuna.study.fake")
    log = CommandLog("tune")
    with TracebacksToLog(log):
        try:
            raise AssertionError("Should not reach.")
        except AssertionError:
            logger.warning("Trial 0 failed", exc_info=True)
        logger.warning("plain warning")
    assert console.getvalue() == "plain warning\n"
    text = log.path.read_text()
    assert "Trial 0 failed" in text and "Traceback" in text and "Should not reach." in text
    try:
        raise ValueError("after")
    except ValueError:
        logger.error("outside the command", exc_info=True)  # the factory is restored
    assert "Traceback" in console.getvalue()


def test_a_full_disk_seen_through_a_library_is_exit_2_and_one_sentence(tmp_path, monkeypatch, capsys):
    import errno

    monkeypatch.setattr(errors, "_crash_logs", [tmp_path / "logs"])
    logger, console = console_logger("mlflow.store.fake")

    def main(argv=None):
        for _ in range(15):  # as MLflow logged each failed write
            try:
                raise OSError(errno.ENOSPC, "No space left on device", "mlruns/1")
            except OSError:
                logger.exception("failed to log")
        raise RuntimeError("store failed") from OSError(errno.ENOSPC, "No space left on device", "mlruns/1")

    main.__code__ = main.__code__.replace(co_filename="tune.py")
    assert cli(main)([]) == 2
    err = capsys.readouterr().err
    assert console.getvalue() == "" and err.count("\n") == 1 and "no space left on the device (mlruns/1)" in err
