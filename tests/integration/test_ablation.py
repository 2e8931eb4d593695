"""The ablation stage: its CSVs, its report and figures, its MLflow runs, and its wording rules."""

import csv
import json
import re
from dataclasses import asdict
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from msc.analysis.error_kinds import ERROR_KINDS, bad_case_columns
from msc.analysis.variants import ablation_columns
from msc.config import with_overrides
from msc.core.handoff import write_handoff
from msc.core.labels import COURSE_LABELS
from src import ablation, report
from tests.unit.analysis.test_ablation import read_csv, tune_summary

TUNED = {"train.fusion": "gated", "train.lr": 0.003, "train.hidden_dim": 128, "train.dropout": 0.1}
TRAINED = {"text", "image", "early", "late", "cross_attention", "gated", "gated:no_views"}


def test_ablation_writes_tables_bad_cases_report_and_mlflow_runs(trained_project, config, capsys):
    config = with_overrides(config, {"train.epochs": 2, "ablation.seeds": 3})
    (trained_project / "params.yaml").write_text(yaml.safe_dump(asdict(config)))
    metrics = trained_project / "results" / "metrics.json"
    metrics.parent.mkdir()
    write_handoff(metrics, tune_summary(TUNED, best_trial=7))

    assert ablation.main(["--params", "params.yaml"]) == 0
    # One plain line per trained row, for logs without a terminal (DVC, CI, nohup).
    progress = [line for line in capsys.readouterr().out.splitlines() if " seeds in " in line]
    assert len(progress) == len(TRAINED) and all("holdout weighted F1" in line for line in progress)
    assert not (trained_project / "results" / "report.md").exists(), "the report is the report stage's"
    assert report.main([]) == 0

    results = trained_project / "results"
    assert "metrics.json` holds no holdout scores of a registered model" in (results / "report.md").read_text()
    with (results / "ablation.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == list(ablation_columns(COURSE_LABELS))
    rows = {row["variant"]: row for row in read_csv(results / "ablation.csv")}
    assert set(rows) == TRAINED | {"logistic_probe", "zero_shot", "bayes:text", "bayes:image", "bayes:both"}
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "ablation")
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    for name in TRAINED:
        row = rows[name]
        # The CSV's mean and std are those of the per-seed holdout scores logged to MLflow.
        per_seed = [m.value for m in client.get_metric_history(children[f"ablation-{name}"].info.run_id,
                                                               "holdout_weighted_f1")]
        assert row["seeds"] == "3" and len(per_seed) == 3, name
        assert float(row["weighted_f1"]) == pytest.approx(np.mean(per_seed), abs=1e-4), name
        assert float(row["weighted_f1_std"]) == pytest.approx(np.std(per_seed, ddof=1), abs=1e-4), name
        assert int(row["trainable_params"]) > 0 and "throughput_samples_per_s" not in row
        assert float(row["weighted_f1_ci_low"]) <= float(row["weighted_f1"]) <= float(row["weighted_f1_ci_high"]), name
    assert {rows[n]["kind"] for n in ("text", "image")} == {"unimodal"}
    assert {rows[n]["kind"] for n in ("early", "late", "cross_attention", "gated")} == {"fusion"}
    assert rows["gated:no_views"]["kind"] == "augmentation"
    assert int(rows["early"]["trainable_params"]) > int(rows["late"]["trainable_params"])
    assert rows["logistic_probe"]["seeds"] == "1" and rows["logistic_probe"]["weighted_f1_std"] == ""
    zero_shot = rows["zero_shot"]
    assert zero_shot["kind"] == "baseline" and zero_shot["seeds"] == "1" and zero_shot["trainable_params"] == ""
    assert float(zero_shot["weighted_f1_ci_low"]) <= float(zero_shot["weighted_f1"]) <= float(
        zero_shot["weighted_f1_ci_high"])

    with (results / "bad_cases.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == list(bad_case_columns(COURSE_LABELS))
    cases = read_csv(results / "bad_cases.csv")
    assert cases, "a 3-epoch head on 240 samples gets some holdout samples wrong"
    for case in cases:
        assert case["kind"] in ERROR_KINDS and case["true_label"] != case["predicted_label"]
        assert sum(float(case[f"p_{label}"]) for label in COURSE_LABELS) == pytest.approx(1.0, abs=1e-3)
        assert max(COURSE_LABELS, key=lambda label: float(case[f"p_{label}"])) == case["predicted_label"]
        assert Path(case["image_path"]).is_file() and case["guid"] in case["image_path"]

    text = (results / "report.md").read_text()
    assert "random weights" in text and str(config.model.backbone) in text
    assert "`zero_shot`" in text and "lands near chance" in text
    assert "best trial (#7)" in text and "`hidden_dim` 128" in text and "`lr` 0.003" in text
    assert "## Error analysis: `gated`" in text and "[bad_cases.csv](bad_cases.csv)" in text
    for heading in ("## Modality ablation", "## Fusion comparison", "## Augmentation", "## Baselines"):
        assert heading in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert set(images) == {"figures/variants.png", "figures/confusion.png", "figures/training_curves.png",
                           "figures/reliability.png", "figures/attribution.png"}
    # What drove the predictions: the modality split by error kind and class; a pooled head has no tokens.
    assert "## What drove the predictions: `gated`" in text and "| `correct` |" in text
    assert "No token or patch evidence: `gated` reads one pooled vector per modality" in text
    attributions = np.array([[float(case["attr_text"]), float(case["attr_image"])] for case in cases])
    assert np.isfinite(attributions).all() and np.abs(attributions).sum() > 0
    for image in images:
        assert (results / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image

    assert "**In one sentence:** the tuned `gated` head" in text and "logistic probe" in text
    assert "throughput" not in text.lower()

    assert set(children) == {f"ablation-{name}" for name in rows}
    # The runs carry the training's own span, not the seconds spent logging after it.
    for child in children.values():
        assert parent.info.start_time <= child.info.start_time <= child.info.end_time <= parent.info.end_time
    trained_ms = sum(children[f"ablation-{n}"].info.end_time - children[f"ablation-{n}"].info.start_time for n in TRAINED)
    assert parent.info.end_time - parent.info.start_time >= trained_ms > 0
    gated = children["ablation-gated"]
    assert gated.data.params["train.hidden_dim"] == "128" and gated.data.params["train.lr"] == "0.003"
    assert len(client.get_metric_history(gated.info.run_id, "holdout_weighted_f1")) == 3  # one per seed
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"ablation.csv", "bad_cases.csv", "report.md", "figures"} <= artifacts
    assert parent.data.tags["split_identity"] == json.loads((results / "ablation.json").read_text())[
        "context"]["split_identity"]
    # A killed ablation that replaced ablation.csv but not ablation.json: the report refuses the mix.
    with (results / "ablation.csv").open("a") as handle:
        handle.write("\n")
    capsys.readouterr()
    assert report.main([]) == 2
    assert "ablation.csv' is from another ablation run than ablation.json" in capsys.readouterr().err


def test_the_int8_row_reports_what_int8_features_cost_with_intervals(trained_project, config, monkeypatch, tmp_path):
    from msc.analysis.precision_row import PRECISION_COLUMNS
    from msc.model.onnx_towers import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "towers"))
    config = with_overrides(config, {"train.epochs": 2, "ablation.seeds": 2, "ablation.int8_row": True})
    (trained_project / "params.yaml").write_text(yaml.safe_dump(asdict(config)))
    metrics = trained_project / "results" / "metrics.json"
    metrics.parent.mkdir()
    write_handoff(metrics, tune_summary(TUNED, best_trial=7))

    assert ablation.main(["--params", "params.yaml"]) == 0
    assert report.main([]) == 0, "the report reads a table with the int8 row"
    results = trained_project / "results"
    with (results / "ablation.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == [*ablation_columns(COURSE_LABELS), *PRECISION_COLUMNS]
    rows = {row["variant"]: row for row in read_csv(results / "ablation.csv")}
    assert rows["gated:int8"]["kind"] == "precision" and rows["gated:int8"]["seeds"] == "2"
    for name in ("gated", "gated:int8"):  # the fp32 reference and the int8 row
        row = {key: float(value) for key, value in rows[name].items() if key in PRECISION_COLUMNS and value}
        assert row["accuracy_ci_low"] <= float(rows[name]["accuracy"]) <= row["accuracy_ci_high"], name
        assert 0 <= row["ece_ci_low"] <= row["ece_ci_high"] <= 1 and 0 <= row["ece"] <= 1, name
    cost = [float(rows["gated:int8"][f"accuracy_vs_fp32_ci_{end}"]) for end in ("low", "high")]
    assert -1 <= cost[0] <= cost[1] <= 1 and rows["gated"]["accuracy_vs_fp32_ci_low"] == ""
    assert rows["text"]["ece"] == "", "only the two compared rows carry the intervals"
    assert (Path(f"{config.features.dir}-int8") / "manifest.json").is_file()
