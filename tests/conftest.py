"""Shared fixtures (one synthetic dataset, one tiny CLIP and one feature cache per session) and the tiers:
a test's folder sets its marker (tests/README.md says where a test goes)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

import src  # noqa: F401  (first: src/__init__.py loads this checkout's msc, also where pip install -e ran in another)
from msc.config import Config
from msc.core.labels import COURSE_LABELS
from msc.data.split import write_splits
from msc.data.synthetic import write_dataset
from msc.features.build import featurize
from msc.features.splits import load_splits
from msc.model.tiny import write_backbone
from tests.helpers import TESTS, cache_sections, logged_model_folder, make_config

# The tests' models are tiny: an op is too small to split across threads, and OpenMP's waiting
# threads made the tier slower on a busy 2-core machine. Subprocesses keep torch's default.
torch.set_num_threads(1)


def forget_tracking_uri() -> None:
    """End a run a failed test left active, and unset MLflow's global tracking URI (and with it
    MLFLOW_TRACKING_URI), where MLflow is imported."""
    if (mlflow := sys.modules.get("mlflow")) is not None:
        while mlflow.active_run() is not None:
            mlflow.end_run("FAILED")
        mlflow.set_tracking_uri(None)


@pytest.fixture(autouse=True)
def no_tracking_store_left_over(monkeypatch):
    """Every test starts and ends with no MLflow tracking URI, in the environment or in MLflow's global.
    An in-process tune or predict sets both (mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI), and a
    later test's ``models:/`` URI then resolved in the earlier test's store (in CI, test_hub_provenance
    read another project's Production version). monkeypatch puts back a URI the caller of pytest set."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    forget_tracking_uri()
    yield
    forget_tracking_uri()


@pytest.fixture(scope="session", autouse=True)
def mlflow_schema_built_once(tmp_path_factory):
    """MLflow runs its ~100 schema migrations in every new SQLite store: about 1 s each, and a dozen tests
    of this tier open a store of their own. Here MLflow's own migrations run once per process, into a
    template, and a new, empty SQLite store gets the template's schema (and alembic version) replayed;
    a store with tables, or another database, goes through MLflow as usual. Subprocesses (the
    integration tier's stages) always migrate for real."""
    import contextlib
    import sqlite3

    import sqlalchemy
    from mlflow.store.db import utils
    from mlflow.store.model_registry import sqlalchemy_store as registry_store

    real = utils._initialize_tables
    template = tmp_path_factory.mktemp("mlflow-schema") / "mlflow.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{template}")
    real(engine)
    engine.dispose()
    with contextlib.closing(sqlite3.connect(template)) as connection:
        schema = "\n".join(connection.iterdump())

    def replay_or_migrate(engine):
        if engine.url.get_backend_name() != "sqlite":
            return real(engine)
        raw = engine.raw_connection()
        try:
            empty = not raw.driver_connection.execute("SELECT name FROM sqlite_master").fetchone()
            if empty:
                raw.driver_connection.executescript(schema)
        finally:
            raw.close()
        if not empty:
            real(engine)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "_initialize_tables", replay_or_migrate)  # the tracking store's reference
        patch.setattr(registry_store, "_initialize_tables", replay_or_migrate)  # the registry's own import
        yield


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample") / "data"
    write_dataset(root, n=240, seed=1)
    return root


@pytest.fixture(scope="session")
def small_sample_root(tmp_path_factory) -> Path:
    """80 samples: enough for stratified splits, for tests that build caches of their own."""
    root = tmp_path_factory.mktemp("small-sample") / "data"
    write_dataset(root, n=80, seed=2)
    return root


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-clip"
    write_backbone(folder, "tiny", seed=0)
    return folder


@pytest.fixture(scope="session")
def config(sample_root, tiny_clip, tmp_path_factory) -> Config:
    return make_config(sample_root, tiny_clip, tmp_path_factory.mktemp("cache") / "features")


@pytest.fixture(scope="session")
def cache(config):
    cache, built = featurize(*cache_sections(config))
    assert built
    return cache


@pytest.fixture(scope="session")
def splits(config, cache):
    write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    return load_splits(config.data, cache)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory, tiny_clip) -> Path:
    """A logged model (a random late-fusion head on the tiny CLIP, the course's labels), downloaded once per
    session for the tests that only load it (the model tests of batches and input formats)."""
    return logged_model_folder(tmp_path_factory.mktemp("logged-model"), tiny_clip, COURSE_LABELS)


@pytest.fixture()
def private_config(tmp_path, small_sample_root, tiny_clip) -> Config:
    """A small dataset and cache folder of this test's own, so it can change them; no augmented views."""
    data = tmp_path / "data"
    shutil.copytree(small_sample_root, data)
    return make_config(data, tiny_clip, tmp_path / "features", {"features.augment_views": 0})


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """An empty project folder as cwd: mlflow.db, mlruns/, optuna.db and results/ land there. No feature
    cache: a test that only needs a store or an error message does not pay for building one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def trained_project(project, cache, splits):
    """``project`` for a test that tunes, trains or predicts on ``config``: the session's feature cache
    and splits are built (once per session) before it starts."""
    return project


# The tier of a test is the folder it lies in; `integration` and `slow` are set from it, so that the default
# run (pyproject's addopts: -m 'not slow and not integration') is the unit tier.
TIER_MARKS = {"integration": pytest.mark.integration, "slow": pytest.mark.slow}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(item.path)
        tier = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
        if tier in TIER_MARKS:
            item.add_marker(TIER_MARKS[tier])
