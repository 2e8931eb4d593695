"""Progress without a terminal (issue 36, item 3): under ``dvc exp run``, CI or nohup, every long step
prints done/total and an estimate at least every MSC_PROGRESS_SECONDS (30 by default)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import yaml

from tests.helpers import REPO, make_config, sh
from tests.unit.core.test_progress import progress_lines


def test_featurize_and_tune_without_a_terminal_report_progress(tmp_path, sample_root, tiny_clip):
    config = make_config(sample_root, tiny_clip, tmp_path / "features",
                         {"tune.trials": 2, "train.epochs": 2, "paths.results": str(tmp_path / "results")})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    # stdout and stderr are pipes here, as under `dvc exp run`: no terminal, so no rich bars.
    env = {"PYTHONPATH": str(REPO), "MSC_PROGRESS_SECONDS": "1"}
    featurize = sh(sys.executable, "-m", "src.featurize", cwd=tmp_path, env=env).stdout
    assert {m["what"].split(" (")[0] for m in progress_lines(featurize)} >= {"texts", "images"}
    assert any(m["estimate"] == "done" and m["what"] == "texts" for m in progress_lines(featurize))
    sh(sys.executable, "-m", "src.split", cwd=tmp_path, env=env)
    tune = sh(sys.executable, "-m", "src.tune", cwd=tmp_path, env=env).stdout
    trials = [m for m in progress_lines(tune) if m["what"].endswith("finished trials")]
    assert trials and trials[-1]["done"] == trials[-1]["total"] == "2"
    # Registration's out-of-fold trainings (5 folds x the kept epochs) say where they are.
    refits = [m for m in progress_lines(tune) if m["what"].startswith("out-of-fold calibration, 5 trainings")]
    assert refits[0]["done"] == "0" and refits[-1]["estimate"] == "done", tune
    assert tune.index("out-of-fold calibration") > tune.rindex("finished trials: 2/2")  # after the study
    written = json.loads((tmp_path / "results" / "scores.json").read_text())  # DVC's metric, numbers only
    assert set(written) == {"weighted_f1", "accuracy", "macro_f1", "ece", "temperature", "objective"}
    assert all(isinstance(value, float) for value in written.values())
