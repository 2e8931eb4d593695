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

from msc.analysis.error_kinds import ERROR_KINDS, bad_case_columns, error_kind, low_quality_rows
from msc.analysis.report_text import separation, summary_sentence
from msc.analysis.variants import ablation_columns, make_variants, tuned_train_config
from msc.config import with_overrides
from msc.core.errors import UserError
from msc.core.handoff import write_handoff
from msc.core.labels import COURSE_LABELS
from msc.tune.summary import TuneSummary
from src import ablation, report

TUNED = {"train.fusion": "gated", "train.lr": 0.003, "train.hidden_dim": 128, "train.dropout": 0.1}
TRAINED = {"text", "image", "early", "late", "cross_attention", "gated", "gated:no_views"}


def tune_summary(best_params: dict, best_trial: int = 1) -> TuneSummary:
    """A tune stage summary that names ``best_params``; the ablation reads nothing else of it."""
    return TuneSummary(model="msc", version=1, promoted_now=True, gate="", compared_with_version=None,
                       holdout_samples=0, holdout={}, candidate_holdout_weighted_f1=0.0, study_name="msc",
                       study_identity="", feature_fingerprint="", split_identity="", best_trial=best_trial,
                       select_metric="val_weighted_f1", best_value=0.0, best_params=best_params)


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.integration
def test_ablation_writes_tables_bad_cases_report_and_mlflow_runs(project, config, capsys):
    config = with_overrides(config, {"train.epochs": 2, "ablation.seeds": 3})
    (project / "params.yaml").write_text(yaml.safe_dump(asdict(config)))
    metrics = project / "results" / "metrics.json"
    metrics.parent.mkdir()
    write_handoff(metrics, tune_summary(TUNED, best_trial=7))

    assert ablation.main(["--params", "params.yaml"]) == 0
    # One plain line per trained row, for logs without a terminal (DVC, CI, nohup).
    progress = [line for line in capsys.readouterr().out.splitlines() if " seeds in " in line]
    assert len(progress) == len(TRAINED) and all("holdout weighted F1" in line for line in progress)
    assert not (project / "results" / "report.md").exists(), "the report is the report stage's"
    assert report.main([]) == 0

    results = project / "results"
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


def test_the_report_without_ablation_results_is_a_sentence(tmp_path):
    from msc.analysis.report import read_ablation  # src.report imports it after its arguments

    with pytest.raises(UserError, match="ablation.json.*python -m src.ablation"):
        read_ablation(tmp_path)


def test_tuned_params_that_do_not_fit_are_a_clear_error(project, config, tmp_path):
    metrics = tmp_path / "metrics.json"
    write_handoff(metrics, tune_summary({"train.nope": 1}))
    with pytest.raises(UserError, match="best_params do not fit.*train.nope"):
        tuned_train_config(config, metrics)


def test_error_kinds_apply_in_order():
    positive, neutral, negative = range(3)
    assert error_kind(positive, negative, 0.3, text_only=positive, image_only=negative, low_confidence=0.5) == \
        "modality_conflict"
    assert error_kind(neutral, negative, 0.3, positive, positive, 0.5, neutral=neutral) == "ambiguous_neutral"
    assert error_kind(positive, neutral, 0.9, negative, negative, 0.5, neutral=neutral) == "ambiguous_neutral"
    # A label set without a neutral label has no ambiguous_neutral kind.
    assert error_kind(positive, neutral, 0.9, negative, negative, 0.5) == "confident_error"
    assert error_kind(positive, negative, 0.4, negative, negative, 0.5) == "low_confidence"
    assert error_kind(positive, negative, 0.9, negative, negative, 0.5) == "confident_error"
    assert error_kind(positive, negative, 0.3, positive, negative, 0.5, low_quality=True) == "low_quality_image"


def test_small_or_blurry_images_are_low_quality(cache, splits):
    quality = cache.manifest.image_quality
    assert len(quality["short_side"]) == len(quality["sharpness"]) == len(cache.guids)
    rows = splits.holdout
    flagged = low_quality_rows(cache, rows, min_short_side=10_000)  # every image is smaller
    assert flagged.all()
    sharpness = np.array(quality["sharpness"])
    by_blur = low_quality_rows(cache, rows, min_short_side=0)
    assert (sharpness[rows][by_blur] < np.percentile(sharpness[sharpness >= 0], 10)).all()


def row(name, mean, std):
    return {"variant": name, "weighted_f1": mean, "weighted_f1_std": std}


def intervals(table):
    """A Difference from {(a, b): [low, high]}; the reverse pair is the negated interval."""
    return lambda a, b: table[(a, b)] if (a, b) in table else [-table[(b, a)][1], -table[(b, a)][0]]


def test_differences_within_the_spread_or_an_interval_that_includes_0_are_not_ranked():
    rows = [row("a", 0.80, 0.02), row("b", 0.79, 0.03), row("c", 0.70, 0.01), row("d", 0.75, 0.01)]
    text = separation(rows, intervals({("a", "b"): [-0.01, 0.03], ("a", "c"): [0.06, 0.14],
                                       ("a", "d"): [-0.01, 0.11]}))
    assert text.startswith("`a` has the highest mean weighted F1")
    # b: within the seed spread; d: beyond it, but its paired interval includes 0.
    assert "not ranked against it: `a` − `b`: +1.0 points [-1.0, +3.0]; `a` − `d`: +5.0 points [-1.0, +11.0]" in text
    assert "Below it: `a` − `c`: +10.0 points [+6.0, +14.0]" in text
    tied = separation([row("a", 0.80, 0.05), row("b", 0.78, 0.01)], intervals({("a", "b"): [0.01, 0.03]}))
    assert "not ranked" in tied and "highest" not in tied
    single = separation([row("a", 0.8, None), row("b", 0.7, None)], intervals({("a", "b"): [0.05, 0.15]}))
    assert "Below it: `a` − `b`" in single and "One seed only" in single


def full_row(name, kind, mean, std):
    return {**row(name, mean, std), "kind": kind}


def test_the_summary_sentence_reads_the_table():
    rows = [full_row("cross_attention", "fusion", 0.728, 0.010), full_row("logistic_probe", "baseline", 0.729, None),
            full_row("text", "unimodal", 0.650, 0.005), full_row("image", "unimodal", 0.740, 0.002)]
    difference = intervals({("cross_attention", "logistic_probe"): [-0.03, 0.03],
                            ("cross_attention", "text"): [0.04, 0.12], ("cross_attention", "image"): [-0.05, -0.001]})
    sentence = summary_sentence(rows, "cross_attention", difference)
    assert "the tuned `cross_attention` head (0.728 weighted F1) is not separated from the logistic probe (0.729)" \
        in sentence
    assert "better than the text head (0.650)" in sentence and "worse than the image head (0.740)" in sentence


def test_cached_text_views_add_an_ablation_row(config):
    names = {v.name: v for v in make_variants(config.train, augment_views=2, text_augment_views=3)}
    tuned = config.train.fusion
    assert names[f"{tuned}:no_text_views"].train.use_text_views is False
    assert names[f"{tuned}:no_text_views"].kind == "augmentation" and f"{tuned}:no_views" in names
    assert not any("text_views" in name for name in (v.name for v in make_variants(config.train, 2)))
