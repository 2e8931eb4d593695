"""What a logged model carries: the library code it runs and nothing else; and models logged before
the ``msc`` package still load."""

import shutil
import sys
from pathlib import Path

import grimp
import mlflow
import pandas as pd
import pytest

from msc.config import TrainConfig
from msc.model.heads import build_head
from msc.track.inference import load_model
from msc.track.logged_model import MODEL_CODE_LAYERS, log_trial_model, registered_copy
from msc.track.store import setup_mlflow
from tests.helpers import TESTS

LEGACY_MODEL = TESTS / "fixtures" / "legacy-model"  # logged by commit d90c6d7's code; its code/src
# keeps only the modules that model imports, so the fixture repeats no more of the old code than it runs


def test_the_model_layers_are_all_that_msc_model_imports():
    graph = grimp.build_graph("msc")
    imported = {module.split(".")[1] for module in graph.find_upstream_modules("msc.model", as_package=True)
                if module.count(".")}
    assert imported | {"model"} == set(MODEL_CODE_LAYERS)


def test_a_logged_model_ships_only_the_code_it_runs(project, tiny_clip, monkeypatch):
    """Also where Python writes bytecode caches (this environment may set PYTHONDONTWRITEBYTECODE; most users
    do not): MLflow's check of the input example imports the model's code from the folder it then logs."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    setup_mlflow()
    with mlflow.start_run():
        info = log_trial_model(build_head("late", 128, 8, 0.0, 3), TrainConfig(hidden_dim=8), 128, str(tiny_clip), "main", 77,
                               ("positive", "neutral", "negative"))
    folder = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    code = folder / "code"
    assert sorted(p.name for p in code.iterdir()) == ["msc"]
    assert sorted(p.name for p in (code / "msc").iterdir()) == ["__init__.py", "core", "data", "model"]
    shipped = {str(p.relative_to(code)) for p in code.rglob("*.py")}
    assert "msc/model/pyfunc.py" in shipped and "msc/data/text.py" in shipped
    assert not [name for name in shipped if name.startswith(("msc/tune", "msc/track", "msc/analysis", "src/"))]
    assert not list(folder.rglob("__pycache__")), "none in code/, nor the entry's beside MLmodel"
    with mlflow.start_run():  # the other way a model is logged: the registered version's copy
        registered = registered_copy(info.model_uri, 1.0)
    assert not list(Path(mlflow.artifacts.download_artifacts(registered.model_uri)).rglob("__pycache__"))
    assert sys.dont_write_bytecode is False, "put back as it was"


def test_a_model_logged_before_the_msc_package_still_loads_and_predicts(tmp_path, monkeypatch, tiny_clip, sample_root):
    import src.predict  # noqa: F401 - this project's `src` is imported, as under `python -m src.predict`

    ours = sys.modules["src"]
    model_folder = shutil.copytree(LEGACY_MODEL, tmp_path / "legacy-model")
    shutil.copytree(tiny_clip, tmp_path / "models" / "tiny-clip")  # its head.json names models/tiny-clip
    monkeypatch.chdir(tmp_path)
    model = load_model(str(model_folder))
    assert sys.modules["src"] is ours and sys.modules["src.predict"].__file__.startswith(str(Path(ours.__file__).parent))
    images = sorted((sample_root / "data").glob("*.jpg"))[:2]
    out = model.predict(pd.DataFrame({"text": ["so happy", "awful"], "image": [str(p) for p in images]}))
    assert list(out.columns) == ["label", "p_positive", "p_neutral", "p_negative"]
    assert out[["p_positive", "p_neutral", "p_negative"]].sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0])
