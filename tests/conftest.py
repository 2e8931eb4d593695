"""Shared fixtures (one synthetic dataset, one tiny CLIP and one feature cache per session) and the tiers:
a test's folder sets its marker (tests/README.md says where a test goes)."""

from __future__ import annotations

import gc
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

import src  # noqa: F401  (first: src/__init__.py loads this checkout's msc, also where pip install -e ran in another)
from tests.helpers import TEST_IMAGE_SCALE, TEST_SHAPE, TESTS, TIER_FOLDERS, tier_may_be_selected

# torch, MLflow and msc are imported by the fixtures that use them: xdist's controller imports this file
# (about 2.5 s of imports) before it starts any worker, and it runs no fixture and no test.
if TYPE_CHECKING:
    from msc.config import Config


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tests' models are tiny: an op is too small to split across threads, and OpenMP's waiting threads
    made the tier slower on a busy 2-core machine. Subprocesses keep torch's default."""
    import torch

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
    """MLflow runs its ~100 schema migrations in every new SQLite store: about 1.5 s each, and a dozen tests
    of this tier open a store of their own. Here MLflow's own migrations run once per run, into a template
    that the xdist workers share (``built_once_per_run``), when a test first opens a store; a new, empty
    SQLite store gets the template's schema (and alembic version) replayed. A store with tables, or another
    database, goes through MLflow as usual. Subprocesses (the integration tier's stages) always migrate for
    real."""
    import contextlib
    import functools
    import sqlite3

    import sqlalchemy
    from mlflow.store.db import utils
    from mlflow.store.model_registry import sqlalchemy_store as registry_store

    real = utils._initialize_tables

    def migrate_template(folder: Path) -> None:
        folder.mkdir(parents=True)
        engine = sqlalchemy.create_engine(f"sqlite:///{folder / 'mlflow.db'}")
        real(engine)
        engine.dispose()
        with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as connection:
            (folder / "schema.sql").write_text("\n".join(connection.iterdump()))

    @functools.cache
    def template_schema() -> str:
        return (built_once_per_run(tmp_path_factory, "mlflow-schema", migrate_template) / "schema.sql").read_text()

    def replay_or_migrate(engine):
        if engine.url.get_backend_name() != "sqlite":
            return real(engine)
        raw = engine.raw_connection()
        try:
            empty = not raw.driver_connection.execute("SELECT name FROM sqlite_master").fetchone()
            if empty:
                raw.driver_connection.executescript(template_schema())
        finally:
            raw.close()
        if not empty:
            real(engine)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "_initialize_tables", replay_or_migrate)  # the tracking store's reference
        patch.setattr(registry_store, "_initialize_tables", replay_or_migrate)  # the registry's own import
        yield


def run_folder(tmp_path_factory) -> Path:
    """The temporary folder of this pytest run that all its xdist workers share (each has a folder of its own
    below it); the run's own without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once_per_run(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``name`` in ``run_folder``: the first worker to ask builds it with ``build``, under a lock,
    and a worker that asks later waits for the lock and takes it as built. Each worker used to build the
    session's data, backbone and feature cache for itself, about 6 s of one core each; the tests only read
    them."""
    from msc.core.files import file_lock

    folder = run_folder(tmp_path_factory) / name
    with file_lock(f"{folder}.lock"):
        if not folder.with_name(f"{name}.built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed midway left
            build(folder)
            folder.with_name(f"{name}.built").touch()
    return folder


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """The sample's 240 posts (its story and seed), on small images for the tests' 32 px backbone."""
    from msc.data.synthetic import write_dataset

    def write(root: Path) -> None:
        write_dataset(root / "data", n=240, seed=1, image_scale=TEST_IMAGE_SCALE)

    return built_once_per_run(tmp_path_factory, "sample", write) / "data"


@pytest.fixture(scope="session")
def small_sample_root(tmp_path_factory) -> Path:
    """80 samples: enough for stratified splits, for tests that build caches of their own."""
    from msc.data.synthetic import write_dataset

    return built_once_per_run(tmp_path_factory, "small-sample",
                              lambda root: write_dataset(root / "data", n=80, seed=2, image_scale=TEST_IMAGE_SCALE)) / "data"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    from msc.model.tiny import write_backbone

    return built_once_per_run(tmp_path_factory, "tiny-clip", lambda folder: write_backbone(folder, TEST_SHAPE, seed=0))


@pytest.fixture(scope="session")
def config(sample_root, tiny_clip, tmp_path_factory) -> Config:
    """The committed params.yaml on the session's data and backbone; its cache and splits folders lie in
    the run's shared folder "cache" (see ``cache``)."""
    from tests.helpers import make_config

    return make_config(sample_root, tiny_clip, run_folder(tmp_path_factory) / "cache" / "features")


@pytest.fixture(scope="session")
def cache(config, tmp_path_factory):
    """The feature cache of ``config``, and its splits, built once per run (``built_once_per_run``)."""
    from msc.data.split import write_splits
    from msc.features.build import featurize
    from tests.helpers import cache_sections

    def build(folder: Path) -> None:
        assert folder == Path(config.features.dir).parent, "config's cache folder is this shared folder"
        _, built = featurize(*cache_sections(config))
        assert built
        write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)

    built_once_per_run(tmp_path_factory, "cache", build)
    cache, built = featurize(*cache_sections(config))  # fresh: opened, not built again
    assert not built
    return cache


@pytest.fixture(scope="session")
def splits(config, cache):
    from msc.features.splits import load_splits

    return load_splits(config.data, cache)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory, tiny_clip) -> Path:
    """A logged model (a random late-fusion head on the tiny CLIP, the course's labels), downloaded once per
    session for the tests that only load it (the model tests of batches and input formats)."""
    from msc.core.labels import COURSE_LABELS
    from tests.helpers import logged_model_folder

    return logged_model_folder(tmp_path_factory.mktemp("logged-model"), tiny_clip, COURSE_LABELS)


@pytest.fixture()
def private_config(tmp_path, small_sample_root, tiny_clip) -> Config:
    """A small dataset and cache folder of this test's own, so it can change them; no augmented views."""
    from tests.helpers import make_config

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
SHARED_BUILDS = {"sample_root", "small_sample_root", "tiny_clip"}  # built once per run (built_once_per_run)


def pytest_ignore_collect(collection_path: Path, config):
    """Skip importing a tier folder (tests/unit, tests/integration, tests/slow) that ``-m`` cannot select."""
    if collection_path.parent == TESTS and collection_path.name in TIER_FOLDERS and config.option.markexpr:
        return True if not tier_may_be_selected(collection_path.name, config.option.markexpr) else None
    return None


def start_order(items) -> dict:
    """A start group per test file. xdist's worksteal hands each worker a contiguous share of the collected
    tests at the start (a half each with ``-n auto`` on 2 cores). Files with a test of the session's feature
    cache come first, files that need no shared build next, the files of the session's data or backbone
    last: the first worker builds the cache while the others start on tests that wait for nothing (the
    second used to wait about 3 s for the first one's builds). Whole files, so that a module-scoped fixture
    is still built once per worker."""
    needs = {}  # a file's path -> the fixtures its tests use
    for item in items:
        needs.setdefault(item.path, set()).update(getattr(item, "fixturenames", ()))
    return {path: 0 if "cache" in fixtures else 2 if fixtures & SHARED_BUILDS else 1 for path, fixtures in needs.items()}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(item.path)
        tier = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
        if tier in TIER_MARKS:
            item.add_marker(TIER_MARKS[tier])
    group = start_order(items)
    items.sort(key=lambda item: group[item.path])  # stable: in collection order within each group


@pytest.hookimpl(trylast=True)  # after pytest's own unconfigure, whose collection reports unraisable exceptions
def pytest_unconfigure(config):
    """Freeze what is still alive as the process ends, so that interpreter shutdown's collections skip the
    objects torch, transformers and MLflow hold: between the last test and the end of a 2-worker run (a
    worker's exit is on xdist's critical path) this took about 3 s. Garbage is still collected first, by
    pytest's unraisable-exception check; what freezing gives up is shutdown finalizing live cycles, which
    Python never promises."""
    gc.freeze()
