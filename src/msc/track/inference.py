"""Loading a model through MLflow as a trusted caller and labelling posts with it: a dataset's test
set, or any table of posts.

Accepts ``models:/msc/Production``, ``models:/msc@production``, ``runs:/<id>/model`` or a local model
folder. Versions logged before the ``msc`` package existed carry their code as a package named
``src`` (``code/src/``), which is also the name of this project's entry package: their code is
loaded under that name while ours is set aside (``legacy_code``), so they still load.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import pandas as pd

from msc.core.errors import UserError
from msc.core.labels import COURSE_LABELS, probability_columns
from msc.data.dataset import load_dataset, missing_files
from msc.data.posts import DataSource, Sample
from msc.data.table import table_posts
from msc.data.text import raw_post_text
from msc.model.explain import EXPLANATION_COLUMNS
from msc.model.usage import (
    NOTE,
    TEXT_CHANGED,
    USAGE_COLUMNS,
    USED,
    first_rows,
    images_sent,
    unusable_images,
    unusable_images_sentence,
)
from msc.track.integrity import checked_copy
from msc.track.registry import ALIAS, MODEL_NAME, disagreement


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


def checked_model(model_uri: str) -> Path:
    """The checked private copy of the model at ``model_uri`` (msc.track.integrity.checked_copy: every file
    as logged and registered, no bytecode caches), or a sentence naming the model and the registered ones."""
    import mlflow

    try:
        return checked_copy(model_uri)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise cannot_load(model_uri, error) from None


def cannot_load(model_uri: str, error: Exception) -> UserError:
    reason = str(error).splitlines()[0][:200]
    return UserError(f"cannot load model '{model_uri}' ({reason}); registered models: {registered_models_listing()}")


def load_model(model_uri: str, checked: Path | None = None):
    """The model, as a trusted caller: it reads the test set's image files by path. ``checked``: the folder
    ``checked_model(model_uri)`` already gave (src.export reads its files first), else a copy made here."""
    import mlflow

    folder = str(checked or checked_model(model_uri))  # every file as logged, before MLflow runs any of them
    try:
        with legacy_code(folder):
            return mlflow.pyfunc.load_model(folder, model_config=trusted_config(folder))
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise cannot_load(model_uri, error) from None


def trusted_config(model_uri: str) -> dict:
    """``model_config`` for src.predict: trusted input, and, where the model has the setting (logged since
    issue 30), no stop for unusable images: src.predict checks predict.max_unusable_image_share itself,
    after printing the counts (``image_usage``). MLflow ignores, with a warning, a key not logged."""
    import mlflow

    logged = mlflow.models.Model.load(model_uri).flavors.get("python_function", {}).get("config") or {}
    return {"trusted_input": True, **({"max_unusable_image_share": 1.0} if "max_unusable_image_share" in logged else {})}


def registry_warning(model_uri: str) -> str | None:
    """A sentence when ``model_uri`` names the registered model and its alias and stage disagree."""
    from mlflow import MlflowClient

    if not model_uri.startswith(f"models:/{MODEL_NAME}"):
        return None
    sentence = disagreement(MlflowClient())
    return sentence and (f"{sentence}: this predicts with {model_uri}; to follow the alias use "
                         f"models:/{MODEL_NAME}@{ALIAS}, and the next `python -m src.tune` moves the stage to it")


def model_labels(model) -> tuple[str, ...]:
    """The label set a loaded pyfunc predicts, in its class order: its head spec's (a model logged
    before label sets existed predicts the course's three)."""
    return tuple(getattr(model.unwrap_python_model(), "labels", COURSE_LABELS))


def check_model_labels(model, labels: tuple[str, ...], where: str) -> None:
    """A sentence when the model's label set is not the set of ``labels`` (the data's, named by ``where``)."""
    theirs = model_labels(model)
    if set(theirs) != set(labels):
        raise UserError(f"the model predicts the labels {', '.join(theirs)}, but {where} has the labels "
                        f"{', '.join(labels)}: use a model trained on this label set (tune on this data), or set "
                        "data.labels and data.root to the data the model was trained on")


LABEL_SET = "label_set"  # the pyfunc's column with inference param coverage (msc/model/pyfunc.py)


def inference_params(driver_margin: float | None = None, coverage: float | None = None,
                     class_conditional: bool = False) -> dict | None:
    """The pyfunc's inference params for ``--explain`` (``driver_margin``) and ``--coverage``, None for neither."""
    params = {**({"explain": True, "driver_margin": driver_margin} if driver_margin is not None else {}),
              **({"coverage": coverage, "class_conditional": class_conditional} if coverage is not None else {})}
    return params or None


def check_label_sets(model) -> None:
    """A sentence when ``model`` cannot give label sets: registered before them, or a trial's model."""
    rules = getattr(model.unwrap_python_model(), "rules", None)
    if rules is None or rules.label_sets is None:
        raise UserError("this model has no conformal label sets (a version registered before them, or a trial's "
                        "model), so it cannot answer --coverage: predict without it, or use a version that "
                        "`python -m src.tune` registered with this msc")


def predict_posts(model, posts: list[Sample], text_encoding: str = "auto", params: dict | None = None) -> pd.DataFrame:
    """(id, label, p_<label>...) for every post, in order; with ``params`` (``inference_params``) ``explain``,
    also attr_text, attr_image and driver (msc/model/explain.py), with ``coverage``, ``label_set``; then
    ``used`` and ``input_note`` (msc/model/usage.py), unless the model was logged before it reported them.

    No post is dropped: one whose text or image file is missing or unreadable is predicted from the
    other modality, flagged on stderr (the model logs unreadable images) and in ``used``.
    """
    params = params or {}
    probabilities = probability_columns(model_labels(model))
    explained = list(EXPLANATION_COLUMNS) if params.get("explain") else []
    asked = explained + ([LABEL_SET] if params.get("coverage") else [])
    if params.get("coverage"):
        check_label_sets(model)
    if not posts:  # nothing to label is an empty, valid output
        return pd.DataFrame({"id": [], "label": [], **{column: [] for column in probabilities + asked},
                             **{column: [] for column in USAGE_COLUMNS}})
    for post in posts:
        if lacking := missing_files(post):
            print(f"warning: post {post.guid} has no {' or '.join(lacking)}; predicted from what it has", file=sys.stderr)
    frame = pd.DataFrame(
        {"text": [raw_post_text(post, text_encoding) for post in posts],
         "image": [None if post.image_path is None else str(post.image_path) for post in posts]},
        index=[post.guid for post in posts],  # the model's warnings name rows by id
    )
    predictions = model.predict(frame, params=params or None)
    if explained and not set(explained) <= set(predictions.columns):
        raise UserError("this model was logged before --explain existed and returns no attributions; predict "
                        "without --explain, or tune again to log a model that explains")
    usage = [column for column in USAGE_COLUMNS if column in predictions.columns]  # none from an older model
    return pd.DataFrame({"id": [post.guid for post in posts], "label": predictions["label"].tolist(),
                         **{column: predictions[column].to_numpy() for column in probabilities + asked + usage}})


def image_usage(predicted: pd.DataFrame, threshold: float) -> tuple[dict[str, int], str, str | None]:
    """What the predictions (``predict_posts``'s) used: counts for MLflow, a report in one line (the
    unusable images with the first rows and why), and the sentence refusing the batch when more than
    ``threshold`` of the images sent could not be used (predict.max_unusable_image_share), else None."""
    if USED not in predicted.columns:
        return {}, "this model was logged before it reported the inputs each prediction used; not counted", None
    used = Counter(predicted[USED])
    unusable = unusable_images(predicted["id"], predicted[NOTE])
    sent = images_sent(predicted[USED], unusable)
    changed = [(row, note[note.index(TEXT_CHANGED):]) for row, note in zip(predicted["id"], predicted[NOTE])
               if TEXT_CHANGED in note]
    counts = {"used_text_image": used["text+image"], "used_text_only": used["text"], "used_image_only": used["image"],
              "used_neither": used["none"], "images_sent": sent, "images_unusable": len(unusable),
              "texts_changed": len(changed)}
    report = (f"inputs used: {used['text+image']} posts text+image, {used['text']} text only, {used['image']} image "
              f"only, {used['none']} neither; {len(unusable)} of the {sent} images the posts name could not be used"
              + (f" ({first_rows(unusable)})" if unusable else "")
              + (f"; {len(changed)} texts were read with characters replaced ({first_rows(changed)})" if changed else ""))
    return counts, report, unusable_images_sentence(unusable, sent, threshold,
                                                    "predict.max_unusable_image_share in params.yaml")


def predict_test_set(model, source: DataSource, text_encoding: str = "auto", params: dict | None = None) -> pd.DataFrame:
    """``predict_posts`` of the dataset's test (unlabelled) posts, in file order, with the columns
    renamed to the course format's guid and tag; refused when the model's label set is not the data's."""
    dataset = load_dataset(source, require_test_files=False)
    check_model_labels(model, dataset.labels, f"the data in '{source.root}'")
    return predict_posts(model, dataset.test, text_encoding, params).rename(columns={"id": "guid", "label": "tag"})


def predict_table(model, table: Path, columns: dict[str, str], text_encoding: str = "auto",
                  params: dict | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """``predict_posts`` of every row of the table of posts ``table`` (``src.predict --input``), in table
    order, and the labels its labelled rows have (id -> label); refused when a row's label is one the
    model does not predict."""
    posts = table_posts(table, columns, labels=None)
    truth = {post.guid: post.label for post in posts if post.label}
    if unknown := sorted(set(truth.values()) - set(model_labels(model))):
        raise UserError(f"the model predicts the labels {', '.join(model_labels(model))}, but the label column of "
                        f"'{table}' has the labels {', '.join(unknown)} too: use a model trained on this label set, or "
                        "empty the label column")
    return predict_posts(model, posts, text_encoding, params), truth


def read_truth(truth_file: Path, ids: list[str]) -> dict[str, str]:
    """id -> label from ``truth_file``, a CSV with ``guid`` and ``label`` columns (the offline sample's
    ``data/cues.csv`` has them), for every id of ``ids``."""
    try:
        with truth_file.open(newline="") as handle:
            truth = {row["guid"]: row["label"] for row in csv.DictReader(handle)}
    except (OSError, KeyError, UnicodeDecodeError) as error:
        raise UserError(f"--true-labels '{truth_file}' cannot be read as a CSV with guid and label columns "
                        f"({error})") from None
    missing = [post_id for post_id in ids if not truth.get(post_id)]
    if missing:
        raise UserError(f"--true-labels '{truth_file}' has no label for {len(missing)} of the predicted posts "
                        f"({', '.join(missing[:5])}); it needs one for every post predicted")
    return truth
