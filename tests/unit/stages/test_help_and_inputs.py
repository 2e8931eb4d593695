"""The first minutes with the commands (issue 36, papercuts): ``--help`` answers without importing the
heavy libraries, every ``--params`` has a help line, and a missing input file is named before any
configuration or model is looked for."""

from __future__ import annotations

import re
import sys

import pytest

from msc.analysis.results import DETAILS
from msc.model.backbone import SAMPLE_BACKBONE
from tests.helpers import REPO, sh

STAGES = sorted(path.stem for path in (REPO / "src").glob("*.py") if path.stem != "__init__")
HEAVY = ("torch", "mlflow", "optuna", "transformers", "pandas", "sklearn")


@pytest.mark.parametrize("stage", STAGES)
def test_help_imports_no_heavy_library(stage):
    # -X importtime lists every module the interpreter imported, on stderr: "import time: ... | name".
    result = sh(sys.executable, "-X", "importtime", "-m", f"src.{stage}", "--help", cwd=REPO)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY), f"src.{stage} --help imported {sorted(imported & set(HEAVY))}"
    assert result.stdout.startswith("usage:")
    if "--params" in result.stdout:  # argparse prints an option without help as its bare name
        assert re.search(r"--params PARAMS\s+\S", result.stdout), result.stdout


def test_help_names_the_library_defaults():
    """The defaults written in the help texts (the library's constants come after the arguments) are the library's."""
    assert SAMPLE_BACKBONE in " ".join(sh(sys.executable, "-m", "src.sample", "--help", cwd=REPO).stdout.split())
    assert DETAILS in " ".join(sh(sys.executable, "-m", "src.ablation", "--help", cwd=REPO).stdout.split())


@pytest.mark.parametrize("flag", ["--input", "--true-labels"])
def test_predict_names_a_missing_file_first(tmp_path, flag):
    # An empty folder: no params.yaml, no MLflow store, no model; the missing file is what gets said.
    result = sh(sys.executable, "-m", "src.predict", flag, "missing.csv", cwd=tmp_path, check=False,
                env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {flag} missing.csv: no such file; give the path of an existing file"


@pytest.mark.parametrize("argv,sentence", [
    (["--coverage", "1.2"], "error: --coverage is 1.2; it must be strictly between 0 and 1, e.g. 0.9"),
    (["--coverage", "0"], "error: --coverage is 0.0; it must be strictly between 0 and 1, e.g. 0.9"),
    (["--class-conditional"], "error: --class-conditional applies to label sets: give --coverage too, e.g. --coverage 0.9"),
])
def test_predict_refuses_a_coverage_it_cannot_answer_before_anything_else(tmp_path, argv, sentence):
    result = sh(sys.executable, "-m", "src.predict", *argv, cwd=tmp_path, check=False, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stderr.strip() == sentence, result.stderr


def test_onnx_bundle_script_names_a_missing_table(tmp_path):
    from msc.model.bundle_predict import read_table

    with pytest.raises(SystemExit, match=r"--input .*missing\.jsonl: no such file"):
        read_table(tmp_path / "missing.jsonl")


def test_backbone_loading_silences_the_hubs_retry_warnings():
    """huggingface_hub logs a warning per retry (ten lines over 23 s when the hub cannot be reached);
    msc's own sentence (offline_help) is what the user should read."""
    import logging

    from msc.core.errors import UserError
    from msc.model.backbone import load_backbone

    with pytest.raises(UserError):
        load_backbone("./no/such/backbone")
    assert logging.getLogger("huggingface_hub.utils._http").getEffectiveLevel() >= logging.ERROR
