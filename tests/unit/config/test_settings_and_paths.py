"""Issue 31: each layer owns and checks its section of params.yaml; the stages write where ``paths``
(or an argument) says; the stage commands in ``src`` are a checked layer above ``msc``."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from msc.config import Config, flatten, load_config
from msc.core.errors import UserError
from msc.data.config import DataConfig
from msc.features.config import FeaturesConfig
from msc.model.config import ModelConfig
from msc.train.config import TrainConfig
from tests.helpers import REPO


@pytest.mark.parametrize("section, values, message", [
    (TrainConfig, {"fusion": "concat"}, "key 'train.fusion' is 'concat'; it must be one of"),
    (ModelConfig, {"family": "bert"}, "key 'model.family' is 'bert'; it must be null"),
    (DataConfig, {"holdout_fraction": 1.5}, "key 'data.holdout_fraction' is 1.5; it must be between 0 and 1"),
    (FeaturesConfig, {"batch_size": 0}, "key 'features.batch_size' is 0; it must be at least 1"),
])
def test_each_layer_checks_its_own_section_without_the_composed_config(section, values, message):
    with pytest.raises(UserError, match=message):
        section(**values)


@pytest.mark.parametrize("text, message", [
    ("paths:\n  results: ' '\n", r"params.yaml: key 'paths.results' is ' '; it must name a folder"),
    ("paths:\n  result: out\n", r"params.yaml: unknown key 'paths.result'; the keys there are: paths.logs, paths.results"),
])
def test_a_bad_paths_section_names_the_key(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_config(path)


def test_paths_are_where_outputs_go_not_run_parameters():
    flat = flatten(Config())
    assert "train.lr" in flat and not any(key.startswith("paths.") for key in flat)


def test_tune_results_go_to_the_folder_the_stage_names(tmp_path):
    from msc.track.promotion import Registration
    from msc.track.summary import TuneSummary
    from msc.tune.summary import TuneOutcome, write_results

    registration = Registration(model="msc", version=1, promoted_now=True, gate="", compared_with_version=None,
                                holdout_samples=0, holdout={}, candidate_holdout_weighted_f1=0.0)
    summary = TuneSummary(registration, study_name="msc", study_identity="", feature_fingerprint="", split_identity="",
                          best_trial=0, select_metric="val_weighted_f1", best_value=0.0, best_params={})
    folder = tmp_path / "elsewhere"
    metrics = write_results(folder, TuneOutcome(summary, "guid,actual\n1,positive\n", "epoch\n", "id,given_label\n"))
    assert metrics == folder / "metrics.json" and '"version": 1' in metrics.read_text()
    assert sorted(p.name for p in folder.iterdir()) == ["holdout_predictions.csv", "label_issues.csv", "metrics.json",
                                                        "training_curves.csv"]


def test_the_report_stage_reads_the_folder_paths_results_names(tmp_path, capsys):
    from src import report

    params = tmp_path / "params.yaml"
    params.write_text(f"paths:\n  results: {tmp_path / 'mine'}\n")
    assert report.main(["--params", str(params)]) == 2
    assert str(tmp_path / "mine" / "ablation.json") in capsys.readouterr().err


def test_a_crash_log_goes_to_paths_logs(tmp_path, monkeypatch, capsys):
    from msc.core import errors

    monkeypatch.setattr(errors, "_crash_logs", [errors.LOG_DIR])  # restored after the test
    monkeypatch.delenv("MSC_DEBUG", raising=False)

    def main(argv=None):
        errors.log_crashes_in(tmp_path / "crashes")
        raise RuntimeError("broke")

    assert errors.cli(main)([]) == 1
    (log,) = (tmp_path / "crashes").iterdir()
    assert str(log) in capsys.readouterr().err


def test_import_linter_checks_the_stage_commands_as_the_top_layer(tmp_path):
    """A copy of the code where the library imports a stage command breaks the src-above-msc contract."""
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "src" / "msc" / "core" / "paths.py").open("a") as handle:
        handle.write("\nimport src.split  # noqa: E402,F401\n")
    lint = str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([lint, "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": f"{tmp_path}:{tmp_path / 'src'}", "PATH": "/usr/bin:/bin"})
    assert "the stage commands in src sit above the msc library BROKEN" in result.stdout, result.stdout[-2000:]
    assert "msc.core.paths -> src.split" in result.stdout
