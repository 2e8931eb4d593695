"""User errors end with one sentence on stderr and exit status 2, never a traceback."""

from pathlib import Path

import pytest


def test_in_process_main_returns_status(tmp_path, capsys):
    from src import featurize

    (tmp_path / "p.yaml").write_text("features:\n  augment_views: -1\n")
    assert featurize.main(["--params", str(tmp_path / "p.yaml")]) == 2
    assert "key 'features.augment_views' is -1; it must be 0 or more" in capsys.readouterr().err
    assert featurize.main(["--params", str(tmp_path / "missing.yaml")]) == 2
    assert "no params file" in capsys.readouterr().err


def test_an_unexpected_failure_is_one_sentence_and_a_log_file(tmp_path, monkeypatch, capsys):
    from msc.core.errors import cli, step

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MSC_DEBUG", raising=False)

    def main(argv=None):
        with step("counting the widgets"):
            raise RuntimeError("the widget counter broke\nsecond line")

    assert cli(main)([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "`python -m src.test_cli` failed unexpectedly while counting the widgets: RuntimeError: " \
           "the widget counter broke." in err
    (log,) = (tmp_path / "logs").iterdir()
    assert str(Path("logs") / log.name) in err
    assert "Traceback" in log.read_text() and "second line" in log.read_text()
    monkeypatch.setenv("MSC_DEBUG", "1")
    with pytest.raises(RuntimeError, match="widget counter"):
        cli(main)([])
