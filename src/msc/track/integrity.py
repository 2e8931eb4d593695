"""Checking a logged model's files before MLflow runs any of them, for msc's own loaders.

A logged model checks its files itself when it loads (msc/model/pyfunc_entry.py), but its entry file
has run by then. Here, in ``src.predict``, ``src.serve`` and registration, every file (the entry
included) is checked before MLflow loads the model, in a copy without bytecode caches: against the
model's ``artifacts/digests.json`` and, for a registered version, against the version's tag
``model_digest``, which lives in the tracking store, apart from the model's files
(msc/model/integrity.py). Its MLmodel, which MLflow writes after the digests and which decides what
runs first, must still run the model's own entry and code with the logged config. The model is then
loaded from the very copy that was checked; other loaders (spark_udf, Ray) get the same by loading
the folder ``checked_copy`` returns.
A model logged before digests were recorded loads with a warning that it cannot be checked.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import warnings
from pathlib import Path

from msc.core.errors import UserError
from msc.model.integrity import BYTECODE, CODE, DIGEST_TAG, DIGESTS, ENTRY, drop_bytecode, model_problem, sha256_of


def registered_version(model_uri: str):
    """The ModelVersion that a ``models:/<name>/<version|stage>`` or ``models:/<name>@<alias>`` URI names
    now; None for any other URI (a run's or a logged model's)."""
    from mlflow import MlflowClient
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    if not model_uri.startswith("models:/"):
        return None
    client = MlflowClient()
    named = get_model_name_and_version(client, model_uri)  # (model id,) for models:/m-<id>
    return client.get_model_version(*named) if len(named) == 2 else None


def checked_copy(model_uri: str) -> Path:
    """A private copy of the model of ``model_uri`` whose files are as logged (and registered), without
    bytecode caches (digests.json covers none: ``drop_bytecode``); a sentence naming the first file that is
    not. Nobody else writes into the copy between the check and the load, a local folder's symbolic links
    are copied as the files they point to, and a version is fetched by number, so an alias that moves
    meanwhile cannot mix two versions' files. The copy is deleted when this process exits, or at once
    when the model is refused."""
    copy = Path(tempfile.mkdtemp(prefix="msc-model-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    try:
        return checked(model_uri, copy)
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise


def checked(model_uri: str, copy: Path) -> Path:
    """The model of ``model_uri`` fetched into the empty folder ``copy`` and checked (``checked_copy``)."""
    import mlflow

    version, shown = None, None
    if Path(model_uri).is_dir():
        folder = Path(shutil.copytree(model_uri, copy / "model", ignore=shutil.ignore_patterns(BYTECODE)))
        shown = Path(model_uri)  # sentences name the caller's files, not the copy's
    else:
        version = registered_version(model_uri)
        source = f"models:/{version.name}/{version.version}" if version is not None else model_uri
        folder = Path(mlflow.artifacts.download_artifacts(source, dst_path=str(copy)))
        shown = Path(source)  # the copy is deleted when the model is refused: sentences name the model's URI
    if (problem := drop_bytecode(folder)) is not None:  # of a copy msc made itself: a copy it cannot clean
        raise UserError(f"refusing to load '{model_uri}': {problem}")
    expected = version.tags.get(DIGEST_TAG) if version is not None else None
    if expected is None and not (folder / DIGESTS).is_file():
        warnings.warn(f"the model '{model_uri}' was logged before msc recorded the digests of a model's files, so its "
                      "files cannot be checked; register it again (`python -m src.tune`) to have them checked",
                      stacklevel=3)
        return folder
    if (problem := model_problem(folder, expected, shown) or mlmodel_problem(folder, shown)) is not None:
        raise UserError(f"refusing to load '{model_uri}': {problem}")
    return folder


LOADER = "mlflow.pyfunc.loaders.code_model"  # MLflow's loader of a "model from code"


def mlmodel_problem(folder: Path, shown_as: Path | None = None) -> str | None:
    """A sentence when the model's MLmodel no longer runs the model as logged: its entry file first,
    its code folder, its artifacts under the names digested, the config recorded in digests.json.
    ``shown_as``: the folder the sentence names, where ``folder`` is a private copy of it."""
    import mlflow

    record = json.loads((folder / DIGESTS).read_text(encoding="utf-8"))
    flavor = mlflow.models.Model.load(str(folder)).flavors.get("python_function", {})
    paths = {key: value.get("path") for key, value in flavor.get("artifacts", {}).items()}
    runs = (flavor.get("loader_module"), Path(flavor.get("model_code_path", "")).name, flavor.get("code"))
    changed = [what for what, wrong in (
        (f"it runs {runs} instead of ({LOADER!r}, {ENTRY!r}, {CODE!r})", runs != (LOADER, ENTRY, CODE)),
        (f"its artifacts are {paths}", any(not digested(path, record["files"]) for path in paths.values())),
        (f"its config is {flavor.get('config')} where the model was logged with {record.get('model_config')}",
         flavor.get("config") != record.get("model_config"))) if wrong]
    if changed:
        return (f"'{(shown_as or folder) / 'MLmodel'}' was changed after the model was logged ({'; '.join(changed)}): "
                "get the model again from its source, or log and register it again")
    return None


def model_digest(model_uri: str) -> str:
    """The sha256 of the digests.json of the model at ``model_uri``: its registered version's tag."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        return sha256_of(Path(mlflow.artifacts.download_artifacts(f"{model_uri.rstrip('/')}/{DIGESTS}", dst_path=tmp)))


def digested(path: str, files: dict[str, str]) -> bool:
    """Whether the artifact ``path`` is one digests.json records: itself, a folder whose files it lists
    (a bundled backbone), or digests.json."""
    return path == DIGESTS or path in files or any(name.startswith(path.rstrip("/") + "/") for name in files)
