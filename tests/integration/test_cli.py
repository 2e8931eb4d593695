"""User errors end with one sentence on stderr and exit status 2, never a traceback."""

import subprocess
import sys

import pytest

from tests.helpers import REPO


def run_module(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


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


def test_missing_backbone_is_one_sentence(tmp_path, sample_root):
    (tmp_path / "params.yaml").write_text(f"data:\n  root: {sample_root}\nmodel:\n  backbone: openai/clip-vit-base-patch32\n")
    result = run_module("src.featurize", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "python -m src.sample" in result.stderr
