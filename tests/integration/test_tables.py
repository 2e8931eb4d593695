"""A table of posts as the dataset (data.format: table), label sets from the data, and predictions for
any table (issue 22). The end-to-end runs of a binary and a five-class table are integration tests."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from src import split as split_stage
from tests.helpers import committed_params

HEADER = "id,text,image_path,label\n"


def test_binary_and_five_class_tables_run_end_to_end_and_serve(tmp_path, monkeypatch, tiny_clip, capsys):
    """split → featurize → tune (2 trials) → predict --input → serve, as a user types them, on a binary and a
    five-class table sample; every output has the data's labels. Then the five-class model is refused on the
    binary data."""
    from src import sample

    models = {}
    for name, labels in (("binary", "hateful,benign"), ("five", "a,b,c,d,e")):
        project = tmp_path / name
        project.mkdir()
        monkeypatch.chdir(project)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the previous project's, which MLflow exported
        assert sample.main(["--out", "data", "--n", "200", "--seed", "3", "--format", "table", "--labels", labels,
                            "--backbone-out", "unused-backbone"]) == 0
        write_project_params(project, tiny_clip)
        models[name] = check_table_project(project, tuple(sorted(labels.split(","))))
    monkeypatch.chdir(tmp_path / "binary")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'five' / 'mlflow.db'}")
    from src import predict

    capsys.readouterr()
    assert predict.main(["--model-uri", models["five"], "--input", "data/posts.csv", "--out", "x.csv"]) == 2
    assert "the model predicts the labels a, b, c, d, e, but the label column of 'data/posts.csv' has the labels " \
           "benign, hateful" in capsys.readouterr().err
    assert not Path("x.csv").exists()
    assert predict.main(["--model-uri", models["five"]]) == 2  # the binary dataset's unlabelled posts
    assert "but the data in 'data' has the labels benign, hateful" in capsys.readouterr().err


def write_project_params(project: Path, backbone: Path) -> None:
    """The committed params.yaml pointed at the project's table and the tiny backbone; its search space's
    train.neutral_boost names a course label, which tune leaves out for these labels."""
    params = yaml.safe_load(Path(committed_params()).read_text())
    params["data"].update({"format": "table", "table": "posts.csv"})
    params["model"].update({"backbone": str(backbone), "device": "cpu"})
    params["features"].update({"augment_views": 1, "num_workers": 0})
    params["train"].update({"epochs": 2})
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def check_table_project(project: Path, labels: tuple[str, ...]) -> str:
    """Runs the stages in ``project`` and checks their outputs carry ``labels``; returns the registered
    version's URI (a runs:/ URI would do too, but the registry is what users predict with)."""
    from mlflow import MlflowClient

    from src import featurize, predict, tune

    for stage, argv in ((split_stage, []), (featurize, []), (tune, ["--trials", "2"]),
                        (predict, ["--model-uri", "models:/msc/Production", "--input", "data/posts.csv",
                                   "--out", "predictions.csv", "--explain"])):
        assert stage.main(argv) == 0, stage.__name__
    columns = [f"p_{label}" for label in labels]
    predictions = pd.read_csv(project / "predictions.csv", dtype={"id": str})
    posts = pd.read_csv(project / "data" / "posts.csv", dtype={"id": str})
    assert list(predictions.columns) == ["id", "label", *columns, "attr_text", "attr_image", "driver", "used", "input_note"]
    assert predictions["id"].tolist() == posts["id"].tolist()  # every row, in input order
    assert set(predictions["label"]) <= set(labels)
    assert predictions[columns].sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-4)
    holdout = pd.read_csv(project / "results" / "holdout_predictions.csv")
    assert list(holdout.columns) == ["guid", "actual", "predicted", *columns]
    metrics = json.loads((project / "results" / "metrics.json").read_text())["holdout"]
    assert {f"f1_{label}" for label in labels} <= set(metrics)
    version = MlflowClient().get_model_version_by_alias("msc", "production")
    assert version.tags["labels"] == ",".join(labels)
    assert served_columns(project, "models:/msc/Production") == ["label", *columns, "used", "input_note"]
    return f"models:/msc/{version.version}"


def served_columns(project: Path, model_uri: str) -> list[str]:
    """The output columns `mlflow models serve` gives for two posts."""
    import base64
    import urllib.request

    from benchmarks.processes import free_port, serve_model

    image = next((project / "data" / "images").glob("*.jpg")).read_bytes()
    rows = [["a post", base64.b64encode(image).decode()], ["another post", base64.b64encode(image).decode()]]
    body = json.dumps({"dataframe_split": {"columns": ["text", "image"], "data": rows}}).encode()
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    with serve_model(model_uri, project, env, port):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            served = pd.DataFrame(json.loads(response.read())["predictions"])
    assert len(served) == 2
    return list(served.columns)
