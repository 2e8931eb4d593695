"""The one end-to-end run of the fast tier: split, cache, a small study, the registry and predict."""

import json
from dataclasses import asdict
from pathlib import Path

import mlflow
import yaml

from src import predict, tune
from src.config import with_overrides


def test_study_registers_a_model_that_labels_the_test_set(project, config, capsys):
    small = with_overrides(config, {"tune.trials": 2, "train.epochs": 2})
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(small)))))
    assert tune.main(["--params", str(params)]) == 0
    summary = json.loads((project / "results" / "metrics.json").read_text())
    assert summary["promoted_now"] and summary["version"] == 1 and summary["holdout_samples"] > 0
    version = mlflow.MlflowClient().get_model_version_by_alias("msc", "production")
    assert version.current_stage == "Production" and version.tags["split_identity"] == summary["split_identity"]
    # The UI link opens the experiment's runs in the model-training view, not GenAI's overview.
    experiment_id = mlflow.get_experiment_by_name("msc").experiment_id
    assert (f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning&"
            f"orderByKey=metrics.%60objective%60&orderByAsc=false (after `mlflow ui --backend-store-uri "
            f"sqlite:///{project / 'mlflow.db'}`)") in capsys.readouterr().out

    assert predict.main(["--model-uri", "models:/msc/Production", "--params", str(params)]) == 0
    lines = (project / "results" / "test_with_label.txt").read_text().splitlines()
    test_lines = (Path(config.data.root) / "test_without_label.txt").read_text().splitlines()
    assert lines[0] == "guid,tag" and len(lines) == len(test_lines)
    assert [line.split(",")[0] for line in lines[1:]] == [line.split(",")[0] for line in test_lines[1:]]
    assert {line.split(",")[1] for line in lines[1:]} <= {"positive", "neutral", "negative"}
