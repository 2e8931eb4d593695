"""A logged model's files are checked before they run: a changed entry, shipped code file, head.json or
weights file is refused with a sentence naming it; a model logged before digests loads with a warning."""

import importlib.util
import json
import py_compile
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from msc.config import TrainConfig
from msc.core.errors import UserError
from msc.model.heads import build_head
from msc.model.integrity import DIGEST_TAG, DIGESTS, sha256_of
from msc.model.provenance import backbone_identity
from msc.track.export import export_model
from msc.track.inference import load_model
from msc.track.integrity import checked_copy
from msc.track.logged_model import log_trial_model
from msc.track.registry import promote
from msc.track.store import setup_mlflow
from src.serve import local_model
from tests.unit.track.test_logged_model import LEGACY_MODEL

MARKER = "tampered-code-ran"
# The case: a line appended to the version's pyfunc_entry.py ran during src.predict.
APPENDED = f"\nimport pathlib; pathlib.Path({MARKER!r}).write_text('ran')\n"


@pytest.fixture(scope="module")
def logged(tmp_path_factory, tiny_clip) -> Path:
    """A trial's model over the tiny CLIP, downloaded once; each test changes a copy of it."""
    work = tmp_path_factory.mktemp("integrity")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
        setup_mlflow()
        with mlflow.start_run():
            info = log_trial_model(build_head("late", 128, 8, 0.0, 3), TrainConfig(hidden_dim=8), 128, str(tiny_clip),
                                   "main", 77, ("positive", "neutral", "negative"),
                                   identity=backbone_identity(str(tiny_clip), "main"))
        return Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(work / "model")))


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def edit_head_json(path: Path) -> None:
    spec = json.loads(path.read_text())
    spec["temperature"] = 0.5  # sharper probabilities, same labels: nothing else would notice
    path.write_text(json.dumps(spec))


TAMPERINGS = {
    "pyfunc_entry.py": lambda model: append(model / "pyfunc_entry.py", APPENDED),
    "code/msc/model/pyfunc.py": lambda model: append(model / "code/msc/model/pyfunc.py", APPENDED),
    "code/msc/model/integrity.py": lambda model: append(model / "code/msc/model/integrity.py", "\n# edited\n"),
    "artifacts/head.safetensors": lambda model: flip_last_byte(model / "artifacts/head.safetensors"),
    "artifacts/head.json": lambda model: edit_head_json(model / "artifacts/head.json"),
    "code/msc/core/extra.py": lambda model: (model / "code/msc/core/extra.py").write_text("x = 1\n"),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_a_changed_file_of_a_logged_model_is_refused_naming_it(name, logged, tmp_path, monkeypatch):
    """Refused by msc's loaders (src.predict, src.serve) before MLflow runs any file, and by the model's own
    entry when another caller loads it (`mlflow models serve`, spark_udf, plain mlflow.pyfunc.load_model)."""
    monkeypatch.chdir(tmp_path)
    model = shutil.copytree(logged, tmp_path / "model")
    TAMPERINGS[name](model)
    with pytest.raises(UserError, match=f"refusing to load .*'{model / name}' was (changed|added)"):
        load_model(str(model))
    with pytest.raises(UserError, match=f"refusing to load .*'{model / name}' was (changed|added)"):
        local_model(str(model))
    with pytest.raises(mlflow.exceptions.MlflowException) as refused:
        mlflow.pyfunc.load_model(str(model), model_config={"trusted_input": True})
    assert str(model / name) in str(refused.value) or "integrity.py' is not the file" in str(refused.value)
    assert not (tmp_path / MARKER).exists(), "the appended line ran"


MLMODEL_EDITS = {  # MLmodel is written by MLflow after the digests, and decides what runs first
    "config": ("trusted_input: false", "trusted_input: true"),  # a served model would read files by path
    "entry": ("model_code_path: ", "model_code_path: /elsewhere/evil.py\n    previous_code_path: "),
}


@pytest.mark.parametrize("edit", list(MLMODEL_EDITS))
def test_a_changed_mlmodel_is_refused_by_msc_loader(edit, logged, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = shutil.copytree(logged, tmp_path / "model")
    old, new = MLMODEL_EDITS[edit]
    text = (model / "MLmodel").read_text()
    assert old in text
    (model / "MLmodel").write_text(text.replace(old, new, 1))
    with pytest.raises(UserError, match=f"'{model / 'MLmodel'}' was changed after the model was logged"):
        load_model(str(model))


def test_the_untouched_model_loads_and_predicts(logged, sample_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = shutil.copytree(logged, tmp_path / "model")
    images = sorted((sample_root / "data").glob("*.jpg"))[:2]
    out = load_model(str(model)).predict(pd.DataFrame({"text": ["so happy", "awful"], "image": [str(p) for p in images]}))
    assert out[["p_positive", "p_neutral", "p_negative"]].sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0])
    recorded = json.loads((model / DIGESTS).read_text())["files"]
    assert {"pyfunc_entry.py", "artifacts/head.json", "artifacts/head.safetensors", "code/msc/model/pyfunc.py",
            "code/msc/model/integrity.py"} <= set(recorded)


def test_a_registered_version_is_checked_against_its_tag(project, tiny_clip):
    """A change that also rewrites digests.json inside the model is caught by the version's tag,
    which lives in the tracking store."""
    with mlflow.start_run():
        info = log_trial_model(build_head("late", 128, 8, 0.0, 3), TrainConfig(hidden_dim=8), 128, str(tiny_clip),
                               "main", 77, ("positive", "neutral", "negative"),
                               identity=backbone_identity(str(tiny_clip), "main"))
    version = promote(MlflowClient(), info.model_uri, {}, {})
    tags = MlflowClient().get_model_version("msc", version.version).tags
    stored = Path(mlflow.get_logged_model(info.model_id).artifact_location.removeprefix("file://"))
    assert tags[DIGEST_TAG] == sha256_of(stored / DIGESTS)
    load_model("models:/msc@production")  # as registered: loads
    plant_bytecode(stored, "pyfunc_entry.py")  # in the store: the download is checked without it
    load_model("models:/msc@production")
    assert not (project / MARKER).exists(), "the planted bytecode ran"
    assert cache_files(Path(local_model("models:/msc@production"))) == []
    append(stored / "pyfunc_entry.py", APPENDED)
    digests = json.loads((stored / DIGESTS).read_text())
    digests["files"]["pyfunc_entry.py"] = sha256_of(stored / "pyfunc_entry.py")
    (stored / DIGESTS).write_text(json.dumps(digests))
    refused = (f"'models:/msc/{version.version}/artifacts/digests.json' is not the one this model version was "
               f"registered with.*{DIGEST_TAG}")  # the URI, not the deleted copy
    with pytest.raises(UserError, match=refused):
        load_model("models:/msc@production")
    with pytest.raises(UserError, match=refused):  # src.export too: it checked only the files against digests.json
        export_model("models:/msc@production", project / "bundle")
    assert not (project / "bundle").exists()
    assert not (project / MARKER).exists()


def pre_digest_model(logged: Path, folder: Path) -> Path:
    """``logged`` as msc logged it before digests and backbone identities: the entry without checks, no
    digests.json, head.json of version 1."""
    model = shutil.copytree(logged, folder)
    (model / "pyfunc_entry.py").write_text("import mlflow\n\nfrom msc.model.pyfunc import MscModel\n\n"
                                           "mlflow.models.set_model(MscModel())\n")
    (model / DIGESTS).unlink()
    spec = json.loads((model / "artifacts/head.json").read_text())
    del spec["backbone_identity"]
    (model / "artifacts/head.json").write_text(json.dumps({**spec, "schema": "head-spec@1"}))
    return model


def test_models_logged_before_the_checks_load_with_a_warning(logged, tmp_path, monkeypatch, tiny_clip):
    monkeypatch.chdir(tmp_path)
    model = pre_digest_model(logged, tmp_path / "before-digests")
    with pytest.warns(UserWarning) as warned:
        load_model(str(model))
    said = " ".join(str(w.message) for w in warned)
    assert "its files cannot be checked" in said and "cannot check that" in said and str(tiny_clip) in said
    legacy = shutil.copytree(LEGACY_MODEL, tmp_path / "legacy-model")  # code/src, before the msc package
    shutil.copytree(tiny_clip, tmp_path / "models" / "tiny-clip")
    with pytest.warns(UserWarning, match="its files cannot be checked"):
        load_model(str(legacy))


def cache_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if "__pycache__" in path.parts and not path.is_dir()]


def plant_bytecode(model: Path, name: str, extra: str = APPENDED) -> Path:
    """A bytecode cache for the model's file ``name`` that runs ``extra`` after it: an unchecked-hash pyc
    (PEP 552), which Python runs whatever the source says, where Python looks for ``name``'s cache."""
    source = model / name
    tampered = source.with_name("tampered.py")
    tampered.write_text(source.read_text() + extra)
    cache = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(tampered), cfile=str(cache), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    tampered.unlink()
    return cache


def test_planted_bytecode_never_runs_through_msc_loaders(logged, tmp_path, monkeypatch):
    """digests.json covers no bytecode: src.predict and src.serve load a private copy without any
    ``__pycache__``, so a planted cache of the entry (which would replace the entry and its checks) never
    runs; a plain MLflow load runs it, which docs/labelling.md says."""
    monkeypatch.chdir(tmp_path)
    model = shutil.copytree(logged, tmp_path / "model")
    planted = plant_bytecode(model, "pyfunc_entry.py")
    for checked in (checked_copy(str(model)), Path(local_model(str(model)))):  # predict's, and serve's workers'
        assert checked != model and cache_files(checked) == []
    assert planted.is_file(), "the caller's folder is left as it was"
    load_model(str(model))
    assert not (tmp_path / MARKER).exists(), "the planted bytecode ran"
    mlflow.pyfunc.load_model(str(model))
    assert (tmp_path / MARKER).exists(), "the planted entry cache runs under a plain MLflow load (documented)"


def test_a_planted_cache_of_the_checker_does_not_turn_the_check_off(logged, tmp_path, monkeypatch):
    """The entry runs the checker from the very bytes it hashed: an import of it would run this cache, whose
    model_problem finds nothing wrong, and the changed pyfunc.py would load. (The refusal carries the test:
    this process imports msc from the repository, so the changed pyfunc.py would not run here even if loaded;
    tests/integration/test_model_bytecode.py loads in a fresh process.)"""
    monkeypatch.chdir(tmp_path)
    model = shutil.copytree(logged, tmp_path / "model")
    plant_bytecode(model, "code/msc/model/integrity.py", "\ndef model_problem(folder, expected_digest=None):\n    return None\n")
    append(model / "code/msc/model/pyfunc.py", APPENDED)
    with pytest.raises(mlflow.exceptions.MlflowException, match="pyfunc.py' was changed after the model was logged"):
        mlflow.pyfunc.load_model(str(model))
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("linked", ["code/msc/model", "code"])
def test_a_linked_folder_is_refused_by_the_entry_and_copied_by_msc(linked, logged, tmp_path, monkeypatch):
    """A linked folder escapes a walk of the model's files (its bytecode caches too): no logged model holds
    one, so the entry refuses it, and msc's loaders check and load a copy of what it points to."""
    monkeypatch.chdir(tmp_path)
    model = shutil.copytree(logged, tmp_path / "model")
    shutil.move(model / linked, tmp_path / "elsewhere")
    (model / linked).symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    plant_bytecode(model, "code/msc/model/pyfunc.py")  # behind the link
    checked = checked_copy(str(model))
    assert not (checked / linked).is_symlink() and cache_files(checked) == []
    load_model(str(model))
    with pytest.raises(mlflow.exceptions.MlflowException, match=f"'{model / linked}' is a symbolic link"):
        mlflow.pyfunc.load_model(str(model))
