"""The one end-to-end run of the fast tier: split, cache, a small study, the registry and predict."""

import json
from dataclasses import asdict
from pathlib import Path

import mlflow
import yaml

from src import predict
from src.config import with_overrides
from src.tune import tune


def test_study_registers_a_model_that_labels_the_test_set(project, config):
    small = with_overrides(config, {"tune.trials": 2, "train.epochs": 2})
    summary = tune(small)
    assert summary["promoted_now"] and summary["version"] == 1
    metrics = json.loads((project / "results" / "metrics.json").read_text())
    assert metrics["study_name"] == summary["study_name"] and metrics["holdout_samples"] > 0
    version = mlflow.MlflowClient().get_model_version_by_alias("msc", "production")
    assert version.current_stage == "Production" and version.tags["split_identity"] == summary["split_identity"]

    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(small)))))
    assert predict.main(["--model-uri", "models:/msc/Production", "--params", str(params)]) == 0
    lines = (project / "results" / "test_with_label.txt").read_text().splitlines()
    test_lines = (Path(config.data.root) / "test_without_label.txt").read_text().splitlines()
    assert lines[0] == "guid,tag" and len(lines) == len(test_lines)
    assert [line.split(",")[0] for line in lines[1:]] == [line.split(",")[0] for line in test_lines[1:]]
    assert {line.split(",")[1] for line in lines[1:]} <= {"positive", "neutral", "negative"}
