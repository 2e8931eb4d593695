"""User errors end with one sentence on stderr and exit status 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def run_module(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


@pytest.mark.integration
@pytest.mark.parametrize(
    "params, message",
    [
        ("data:\n  root: nowhere\n", "no dataset at 'nowhere'"),
        ("train:\n  lrr: 1\n", "unknown key 'train.lrr'"),
    ],
)
def test_featurize_user_errors(tmp_path, params, message):
    (tmp_path / "params.yaml").write_text(params)
    result = run_module("src.featurize", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.integration
def test_missing_backbone_is_one_sentence(tmp_path, sample_root):
    (tmp_path / "params.yaml").write_text(f"data:\n  root: {sample_root}\nmodel:\n  backbone: openai/clip-vit-base-patch32\n")
    result = run_module("src.featurize", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "python -m src.sample" in result.stderr


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
