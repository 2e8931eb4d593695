"""Loading a model through MLflow as a trusted caller and labelling a dataset's test set with it.

Accepts ``models:/msc/Production``, ``models:/msc@production``, ``runs:/<id>/model`` or a local model
folder. Versions logged before the ``msc`` package existed carry their code as a package named
``src`` (``code/src/``), which is also the name of this project's entry package: their code is
loaded under that name while ours is set aside (``legacy_code``), so they still load.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from msc.core.errors import UserError
from msc.core.labels import LABELS
from msc.data.dataset import load_dataset
from msc.data.text import decode_text
from msc.model.explain import EXPLANATION_COLUMNS
from msc.track.registry import ALIAS, MODEL_NAME, disagreement
from msc.train.calibration import ece_interval, expected_calibration_error


def registered_models_listing() -> str:
    """'msc (versions 1, 2; production -> 2)', for error messages."""
    from mlflow import MlflowClient

    client = MlflowClient()
    entries = []
    for model in client.search_registered_models():
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{model.name}'"))
        aliases = ", ".join(f"{alias} -> {version}" for alias, version in (model.aliases or {}).items())
        entries.append(f"{model.name} (versions {', '.join(map(str, versions))}{'; ' + aliases if aliases else ''})")
    return "; ".join(entries) or "none registered yet (run `python -m src.tune` first)"


LEGACY_ENTRY = "pyfunc_model.py"  # the model-from-code file of models logged before the msc package


@contextlib.contextmanager
def legacy_code(model_uri: str) -> Iterator[None]:
    """Around loading ``model_uri``: when it was logged before the ``msc`` package (its MLmodel names
    ``src/pyfunc_model.py``, and it carries ``code/src/``), set this project's ``src`` modules aside,
    and put them back afterwards (the legacy model keeps the modules it imported)."""
    import mlflow

    flavor = mlflow.models.Model.load(model_uri).flavors.get("python_function", {})
    if Path(flavor.get("model_code_path", "")).name != LEGACY_ENTRY:
        yield
        return
    ours = {name: module for name, module in sys.modules.items() if name == "src" or name.startswith("src.")}
    for name in ours:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.update(ours)


def load_model(model_uri: str):
    """The model, as a trusted caller: it reads the test set's image files by path."""
    import mlflow

    try:
        with legacy_code(model_uri):
            return mlflow.pyfunc.load_model(model_uri, model_config={"trusted_input": True})
    except (mlflow.exceptions.MlflowException, OSError) as error:
        reason = str(error).splitlines()[0][:200]
        raise UserError(
            f"cannot load model '{model_uri}' ({reason}); registered models: {registered_models_listing()}"
        ) from None


def registry_warning(model_uri: str) -> str | None:
    """A sentence when ``model_uri`` names the registered model and its alias and stage disagree."""
    from mlflow import MlflowClient

    if not model_uri.startswith(f"models:/{MODEL_NAME}"):
        return None
    sentence = disagreement(MlflowClient())
    return sentence and (f"{sentence}: this predicts with {model_uri}; to follow the alias use "
                         f"models:/{MODEL_NAME}@{ALIAS}, and the next `python -m src.tune` moves the stage to it")


def predict_test_set(model, data_root: str, text_encoding: str = "auto",
                     driver_margin: float | None = None) -> pd.DataFrame:
    """(guid, tag, p_positive, p_neutral, p_negative) for every test guid, in file order; with
    ``driver_margin`` (``--explain``), also attr_text, attr_image and driver (msc/model/explain.py).

    No test sample is dropped: one whose text or image file is missing or unreadable is
    predicted from the other modality, and flagged on stderr (the model logs unreadable images).
    """
    dataset = load_dataset(data_root, require_test_files=False)
    explained = list(EXPLANATION_COLUMNS) if driver_margin is not None else []
    if not dataset.test:  # a header-only test file: nothing to label is an empty, valid output
        return pd.DataFrame({"guid": [], "tag": [], **{f"p_{label}": [] for label in LABELS},
                             **{column: [] for column in explained}})
    for sample in dataset.test:
        lacking = [p.name for p in (sample.text_path, sample.image_path) if not p.is_file()]
        if lacking:
            print(f"warning: test guid {sample.guid} has no {' or '.join(lacking)}; predicted from what it has",
                  file=sys.stderr)
    frame = pd.DataFrame(
        {"text": [decode_text(s.text_path.read_bytes(), text_encoding)[0] if s.text_path.is_file() else None
                  for s in dataset.test],
         "image": [str(s.image_path) for s in dataset.test]},
        index=[s.guid for s in dataset.test],  # the model's warnings name rows by guid
    )
    params = None if driver_margin is None else {"explain": True, "driver_margin": driver_margin}
    predictions = model.predict(frame, params=params)
    if explained and not set(explained) <= set(predictions.columns):
        raise UserError("this model was logged before --explain existed and returns no attributions; predict "
                        "without --explain, or tune again to log a model that explains")
    return pd.DataFrame({"guid": [s.guid for s in dataset.test], "tag": predictions["label"].tolist(),
                         **{f"p_{label}": predictions[f"p_{label}"].to_numpy() for label in LABELS},
                         **{column: predictions[column].to_numpy() for column in explained}})


def score_against(labels: pd.DataFrame, truth_file: Path) -> dict[str, float]:
    """Accuracy and expected calibration error (with its 95 % bootstrap interval, ``test_ece_ci95``) of
    the predictions against ``truth_file``, a CSV
    with ``guid`` and ``label`` columns (the offline sample's ``data/cues.csv`` has them)."""
    try:
        with truth_file.open(newline="") as handle:
            truth = {row["guid"]: row["label"] for row in csv.DictReader(handle)}
    except (OSError, KeyError) as error:
        raise UserError(f"--true-labels '{truth_file}' cannot be read as a CSV with guid and label columns "
                        f"({error})") from None
    missing = [guid for guid in labels["guid"] if truth.get(guid) not in LABELS]
    if missing:
        raise UserError(f"--true-labels '{truth_file}' has no positive/neutral/negative label for {len(missing)} test "
                        f"guids ({', '.join(missing[:5])}); it needs one for every guid of test_without_label.txt")
    actual = np.array([LABELS.index(truth[guid]) for guid in labels["guid"]])
    probs = labels[[f"p_{label}" for label in LABELS]].to_numpy()
    return {"test_accuracy": float((probs.argmax(1) == actual).mean()),
            "test_ece": expected_calibration_error(probs, actual), "test_ece_ci95": ece_interval(probs, actual)}
