"""The exported bundle (python -m src.export) reproduces the registered model without torch or msc."""

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from msc.config import TrainConfig
from msc.model.calibrated import CalibrationMap, DecisionRule, ProbabilityRules
from msc.model.heads import build_head
from msc.model.onnx_towers import CACHE_ENV
from msc.model.tiny import write_backbone
from msc.track.logged_model import log_trial_model, registered_copy
from msc.track.registry import ALIAS, MODEL_NAME
from msc.track.store import setup_mlflow
from src import export

LABELS = ("positive", "neutral", "negative")
# Runs the bundle's predict.py with every import of torch, msc, transformers, mlflow and nltk refused:
# the script must stand on onnxruntime, numpy, pillow and tokenizers (and its regex normalisation).
BLOCKED_RUN = """
import importlib.abc, runpy, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "msc", "src", "transformers", "mlflow", "nltk"}:
            raise ImportError(f"{name} is blocked: the bundle must run without it")
sys.meta_path.insert(0, Refuse())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


# A registered version's probability rules (issue 32): the bundle applies them as the pyfunc does.
RULES = ProbabilityRules(CalibrationMap(kind="vector", scale=(1.4, 0.6, 1.1), bias=(0.3, -0.5, 0.2)),
                         DecisionRule(weights=(1.0, 3.0, 0.8))).to_dict()


def register(backbone: Path, fusion: str, temperature: float, rules: dict | None,
             runtime: tuple[str, str] = ("torch", "auto")) -> None:
    """A head of ``fusion`` (untrained: parity needs no accuracy) registered as msc@production with
    ``temperature`` and ``rules``, its features computed by ``runtime`` (model.runtime, model.precision)."""
    train = TrainConfig(fusion=fusion, hidden_dim=32)
    head = build_head(fusion, 128, train.hidden_dim, train.dropout, len(LABELS)).eval()
    with mlflow.start_run():
        trial = log_trial_model(head, train, 128, str(backbone), "main", 77, LABELS, runtime=runtime)
        copy = registered_copy(trial.model_uri, temperature, rules)
    version = mlflow.register_model(copy.model_uri, MODEL_NAME)
    mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, ALIAS, version.version)


# The last: a model whose features come from onnxruntime's int8 towers; its bundle carries those towers.
@pytest.mark.parametrize("family,fusion,rules,runtime", [("clip", "early", None, ("torch", "auto")),
                                                         ("siglip", "late", RULES, ("torch", "auto")),
                                                         ("clip", "late", RULES, ("onnxruntime", "int8"))])
def test_bundle_reproduces_the_registered_model_without_torch_or_msc(tmp_path, monkeypatch, sample_root, family, fusion,
                                                                    rules, runtime):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "towers"))
    setup_mlflow()  # this folder's store, not the one an earlier test in this process pointed MLflow at
    backbone = tmp_path / f"tiny-{family}"
    write_backbone(backbone, "tiny", seed=0, family=family)
    register(backbone, fusion, temperature=1.7, rules=rules, runtime=runtime)

    images = sorted((sample_root / "data").glob("*.jpg"))[:20]
    texts = [(sample_root / "data" / f"{p.stem}.txt").read_text(encoding="utf-8", errors="replace") for p in images]
    texts[0] += " see http://t.co/abc @someone!!"  # the placeholders and punctuation the normalisation handles
    rows = [{"id": p.stem, "text": t, "image_path": f"data/{p.name}"} for p, t in zip(images, texts)]
    rows.append({"id": "no-image", "text": "happy", "image_path": "data/missing.jpg"})  # predicted from its text
    table = sample_root / "posts-onnx.csv"
    pd.DataFrame(rows).to_csv(table, index=False)

    assert export.main(["--model-uri", "models:/msc@production", "--out", str(tmp_path / "bundle")]) == 0
    bundle = tmp_path / "bundle"
    for line in (bundle / "digests.sha256").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest
    digested = {line.split("  ")[1] for line in (bundle / "digests.sha256").read_text().splitlines()}
    assert {"predict.py", "calibrated.py", "text_tower.onnx", "image_tower.onnx", "head.onnx", "tokenizer.json",
            "preprocess.json", "model.json"} <= digested

    out = tmp_path / "onnx.csv"
    run = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(bundle / "predict.py"), "--input", str(table),
                          "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert "post no-image: image unusable" in run.stderr
    onnx = pd.read_csv(out, dtype={"id": str})

    model = mlflow.pyfunc.load_model("models:/msc@production", model_config={"trusted_input": True})
    frame = pd.DataFrame({"text": [r["text"] for r in rows], "image": [str(sample_root / r["image_path"]) for r in rows]})
    torch_out = model.predict(frame)
    columns = [f"p_{label}" for label in LABELS]
    assert list(onnx.columns) == ["id", "label", *columns] and onnx["id"].tolist() == [r["id"] for r in rows]
    assert np.abs(onnx[columns].to_numpy() - torch_out[columns].to_numpy()).max() < 1e-4
    assert onnx["label"].tolist() == torch_out["label"].tolist()
    assert json.loads((bundle / "model.json").read_text())["temperature"] == 1.7  # what the script divided by


def test_a_model_uri_with_no_model_is_a_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert export.main(["--model-uri", "models:/msc/7", "--out", str(tmp_path / "bundle")]) == 2
    assert "cannot load model 'models:/msc/7'" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()
    (tmp_path / "file").write_text("x")
    assert export.main(["--model-uri", "models:/msc/7", "--out", str(tmp_path / "file")]) == 2
    assert "is a file; name a folder" in capsys.readouterr().err


def test_bundle_csv_is_read_as_written(tmp_path):
    """A sibling format: the reference script reads .jsonl as it reads .csv."""
    from msc.model.bundle_predict import read_table

    (tmp_path / "t.csv").write_text("id,text,image_path\n1,\"a, b\",x.jpg\n")
    (tmp_path / "t.jsonl").write_text('{"id": "1", "text": "a, b", "image_path": "x.jpg"}\n')
    assert read_table(tmp_path / "t.csv") == read_table(tmp_path / "t.jsonl") == [
        {"id": "1", "text": "a, b", "image_path": "x.jpg"}]
    with open(tmp_path / "t.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["id", "text", "image_path"]
