"""MLflow setup shared by every stage: where runs go.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<project root>/mlflow.db``
(absolute), with artifacts under ``<project root>/mlruns``. The project root is the repository,
also when DVC runs a stage inside a temporary experiment copy (``.dvc/tmp/exps/...``), so runs
made there are not lost with the copy.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from msc.core.errors import UserError
from msc.core.files import file_lock
from msc.core.paths import project_root

EXPERIMENT = "msc"
SETUP_ATTEMPTS = 6
TRANSIENT_SETUP_ERRORS = ("already exists", "database is locked", "duplicate key")


def local_tracking_uri() -> str:
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri()


def absolute_sqlite_url(url: str) -> str:
    """Make a relative ``sqlite:///file.db`` absolute against the project root."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        return prefix + str(project_root() / url[len(prefix):])
    return url


def setup_mlflow() -> str:
    """Point MLflow at the tracking URI and return the ``msc`` experiment's id."""
    import logging
    import warnings

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Registry stages are deprecated but still what models:/msc/Production resolves; we set both.
    warnings.filterwarnings("ignore", message=".*transition_model_version_stage.*", category=FutureWarning)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = tracking_uri()
    local = uri == local_tracking_uri()  # (set_tracking_uri exports MLFLOW_TRACKING_URI itself)
    mlflow.set_tracking_uri(uri)
    for attempt in itertools.count(1):
        try:
            # Local workers of this project take turns creating the schema (a lock file beside the
            # database); a foreign process (`mlflow ui`, a notebook) does not take the lock, so a
            # collision with it ("table ... already exists", "database is locked") is retried.
            with file_lock(project_root() / ".mlflow.db.lock") if local else contextlib.nullcontext():
                return experiment_id(mlflow, local)
        except Exception as error:  # noqa: BLE001 - SQLAlchemy's and MLflow's wrappers of the same errors
            if attempt == SETUP_ATTEMPTS or not any(word in str(error) for word in TRANSIENT_SETUP_ERRORS):
                raise
            time.sleep(0.5 * attempt)


# The experiment's type: the UI opens it on its runs (model training), not on GenAI's trace overview.
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def experiment_id(mlflow, local: bool) -> str:
    """Create the store's schema if needed, and the ``msc`` experiment; return its id."""
    mlflow.search_registered_models(max_results=1)  # the registry store migrates separately
    if local:
        use_wal(project_root() / "mlflow.db")
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is not None and local:
        check_artifact_root(experiment.artifact_location)
    if experiment is not None:
        if KIND_TAG not in experiment.tags:  # made by an older version, or by hand in the UI
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, KIND_TAG, TRAINING_KIND)
        return experiment.experiment_id
    artifact_location = (project_root() / "mlruns").as_uri() if local else None
    return mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location, tags={KIND_TAG: TRAINING_KIND})


def check_artifact_root(location: str) -> None:
    """Stop when the project's own store keeps its artifacts outside the project.

    The store records its artifact folder as an absolute path (so that runs made in DVC's temporary
    experiment copies, .dvc/tmp/exps, land in the project's mlruns/). After ``cp -a project copy`` the
    copy's new runs would be written into the original's mlruns/; after ``mv project moved`` every
    artifact would be missing.
    """
    if not location.startswith("file:"):
        return
    folder = Path(url2pathname(urlparse(location).path))
    root = project_root()
    if folder == root or root in folder.parents:
        return
    raise UserError(
        f"the MLflow store {root / 'mlflow.db'} keeps its artifacts in {folder}, outside this project ({root}): "
        f"it was copied or moved from {folder.parent}; for a copy, delete mlflow.db and mlruns/ here to start a "
        f"store of its own (the original keeps its runs), and for a move, move the project back to {folder.parent}"
    )


UI_SORT = "orderByKey=metrics.%60objective%60&orderByAsc=false"


def ui_link(experiment_id: str, view: str | None = None) -> str:
    """The experiment's runs in the MLflow UI, in its model-training view, best objective first, or
    in the saved ``view`` (msc/track/views.py), which also sorts and which any search facet here would
    override.

    MLflow 3.17's UI picks GenAI or model training with a per-browser switch that starts on GenAI
    (the experiment's type tag does not override it); ``workflowType`` in the URL sets the switch.
    With a local store, the address is that of ``mlflow ui`` on its default port.
    """
    import mlflow

    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    # Sorted by the trials' objective, best first (a trial's plain metric names hold its kept epoch).
    state = f"viewStateShareKey={view}" if view else UI_SORT
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&{state}"


def use_wal(database: Path) -> None:
    """Switch the SQLite store to write-ahead logging, once (it is a property of the file): readers
    such as the MLflow UI then never block a tuner's writes, nor the tuner theirs."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        if connection.execute("pragma journal_mode").fetchone()[0] != "wal":
            connection.execute("pragma journal_mode=wal")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=project_root()).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
