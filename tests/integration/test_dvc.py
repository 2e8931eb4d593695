"""`dvc repro` end to end on the sample, in a temporary clone of the working tree."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.helpers import sh, snapshot_repository

FAST = ["-S", "model.backbone=models/tiny-clip", "-S", "tune.trials=3", "-S", "train.epochs=2",
        "-S", "features.augment_views=1", "-S", "features.num_workers=0", "-S", "ablation.seeds=1"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    return snapshot_repository(tmp_path_factory.mktemp("clone") / "msc")


def mlflow_runs(root: Path) -> int:
    with sqlite3.connect(root / "mlflow.db") as db:
        return db.execute("select count(*) from runs").fetchone()[0]


def test_repro_without_data_says_what_to_put_where(clone):
    result = sh("dvc", "repro", cwd=clone, check=False)
    assert result.returncode != 0
    # DVC checks data.dvc before any stage runs; its one line names the missing folder.
    assert "missing data 'source': data" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(1500)  # three pipeline runs: about 4 minutes alone on 2 cores, far more on a busy machine
def test_dvc_pipeline_on_the_sample(clone):
    sh(sys.executable, "-m", "src.sample", cwd=clone)
    assert "modified" not in sh("dvc", "status", "data.dvc", cwd=clone).stdout, "the sample reproduces data.dvc"
    sh("dvc", "exp", "run", *FAST, cwd=clone)
    for name in ("metrics.json", "test_with_label.txt", "ablation.csv", "bad_cases.csv", "ablation.json", "report.md",
                 "figures/confusion.png", "holdout_predictions.csv", "training_curves.csv"):
        assert (clone / "results" / name).is_file(), name
    assert (clone / "features" / "manifest.json").is_file() and (clone / "splits" / "splits.csv").is_file()
    assert sh("dvc", "repro", cwd=clone).stdout.strip().endswith("Data and pipelines are up to date.")

    metrics = json.loads(sh("dvc", "metrics", "show", "--json", cwd=clone).stdout)
    assert "holdout" in json.dumps(metrics) and "weighted_f1" in json.dumps(metrics)
    sh("dvc", "plots", "show", "--out", "plots", cwd=clone)
    assert (clone / "plots" / "index.html").is_file()
    # Exactly the declared plots: no stage-level CSV drawn column by column as noise.
    plots = json.loads(sh("dvc", "plots", "show", "--json", cwd=clone).stdout)["data"]
    assert set(plots) == {"holdout_confusion", "loss_per_epoch", "scores_per_epoch", "results/figures/variants.png",
                          "results/figures/confusion.png", "results/figures/training_curves.png",
                          "results/figures/reliability.png"}, set(plots)
    confusion = plots["holdout_confusion"][0]["content"]["spec"]
    assert confusion["encoding"]["x"]["sort"] == ["positive", "neutral", "negative"]
    assert any(layer["mark"]["type"] == "text" for layer in confusion["layer"] if isinstance(layer["mark"], dict))
    assert plots["results/figures/variants.png"][0]["type"] == "image"
    # What DVC's convention commits is tracked by git, so an experiment commit carries it.
    tracked = sh("git", "status", "--porcelain", "--untracked-files=all", "results", cwd=clone).stdout
    for name in ("metrics.json", "holdout_predictions.csv", "training_curves.csv", "figures/variants.png"):
        assert f"results/{name}" in tracked, tracked
    assert "report.md" not in tracked and "test_with_label.txt" not in tracked

    # train.* re-runs tuning and what follows, never featurize or split; a wording fix in the
    # report re-runs the report alone, not the 21 trainings of the ablation.
    params = (clone / "params.yaml").read_text()
    (clone / "params.yaml").write_text(params.replace("  lr: 0.001", "  lr: 0.002"))
    status = sh("dvc", "status", cwd=clone).stdout
    assert "tune:" in status and "featurize:" not in status and "split:" not in status
    (clone / "params.yaml").write_text(params)
    report = (clone / "src" / "report.py").read_text()
    (clone / "src" / "report.py").write_text(report + "# a wording fix\n")
    stages = [line for line in sh("dvc", "status", cwd=clone).stdout.splitlines() if line[:1].isalpha()]
    assert stages == ["report:"], stages
    (clone / "src" / "report.py").write_text(report)

    # A second experiment with another train.lr gets its own study and parent run, and both
    # experiments carry their own metrics. It runs in a temporary copy: its MLflow runs still land
    # in the project's mlflow.db.
    before = mlflow_runs(clone)
    sh("dvc", "exp", "run", "--temp", *FAST, "-S", "train.lr=0.002", cwd=clone)
    assert mlflow_runs(clone) > before
    assert not (clone / ".dvc" / "tmp" / "exps" / "mlflow.db").exists()
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=clone).stdout)
    experiments = [rev for row in shown for exp in (row.get("experiments") or []) for rev in exp["revs"]]
    metrics = [rev["data"]["metrics"]["results/metrics.json"]["data"] for rev in experiments]
    assert len(metrics) == 2 and all("weighted_f1" in m["holdout"] for m in metrics), shown
    studies = {m["study_name"] for m in metrics}
    assert len(studies) == 2, "two configs, two studies"
    with sqlite3.connect(clone / "mlflow.db") as db:
        parents = db.execute("select value from tags where key = 'study_name' and run_uuid not in "
                             "(select run_uuid from tags where key = 'trial_number')").fetchall()
    assert {value for (value,) in parents} == studies, "one parent run per study"
