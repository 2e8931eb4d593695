"""Shared fixtures: one synthetic dataset, one tiny CLIP and one feature cache per session."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from msc.config import Config, load_config, with_overrides
from msc.data.split import write_splits
from msc.data.synthetic import write_dataset
from msc.features.build import featurize
from msc.features.splits import load_splits
from msc.model.tiny import write_backbone

REPO = Path(__file__).resolve().parents[1]
# The tests' models are tiny: an op is too small to split across threads, and OpenMP's waiting
# threads made the tier slower on a busy 2-core machine. Subprocesses keep torch's default.
torch.set_num_threads(1)


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


def committed_params_text() -> str:
    """params.yaml as committed: what a user changed in the working copy (the README's `-S` switch, a
    top-layers experiment) must not change what the tests run. The working copy outside a git checkout."""
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True)
    return committed.stdout if committed.returncode == 0 else (REPO / "params.yaml").read_text()


@functools.lru_cache(maxsize=1)
def committed_params() -> Path:
    """A file holding ``committed_params_text()``, written once per test session."""
    path = Path(tempfile.mkdtemp(prefix="msc-params-")) / "params.yaml"
    path.write_text(committed_params_text())
    return path


def make_config(data_root: Path, backbone: Path, features_dir: Path, overrides: dict | None = None) -> Config:
    """The repository's committed params.yaml pointed at test folders, with dotted-key overrides."""
    return with_overrides(
        load_config(committed_params()),
        {
            "data.root": str(data_root),
            "data.splits_dir": str(features_dir.parent / "splits"),
            "model.backbone": str(backbone),
            "model.device": "cpu",
            "features.dir": str(features_dir),
            "features.augment_views": 2,
            "features.num_workers": 0,
            "features.batch_size": 32,
            "train.epochs": 3,
            **(overrides or {}),
        },
    )


def cache_sections(config: Config, device: bool = False) -> tuple:
    """The sections of ``config`` that ``featurize`` takes (data, model, features), and train.device
    after them for ``open_cache`` when ``device``."""
    return (config.data, config.model, config.features) + ((config.train.device,) if device else ())


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


@pytest.fixture()
def private_config(tmp_path, small_sample_root, tiny_clip) -> Config:
    """A small dataset and cache folder of this test's own, so it can change them; no augmented views."""
    data = tmp_path / "data"
    shutil.copytree(small_sample_root, data)
    return make_config(data, tiny_clip, tmp_path / "features", {"features.augment_views": 0})


@pytest.fixture()
def project(tmp_path, monkeypatch, config, cache, splits):
    """An empty project folder as cwd: mlflow.db, mlruns/, optuna.db and results/ land there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def sh(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command in ``cwd`` as a user types it there: this venv's tools, the folder's own ``src``,
    no MLflow tracking URI unless ``env`` sets one."""
    environment = {**os.environ, "PYTHONPATH": "", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    environment.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(list(args), cwd=cwd, env={**environment, **(env or {})}, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


GIT_USER = ("-c", "user.email=t@t", "-c", "user.name=t")


def snapshot_repository(root: Path) -> Path:
    """The working tree's tracked and unignored files, committed into a fresh git repository at ``root``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "params.yaml").write_text(committed_params_text())  # not a user's edits of the working copy
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", *GIT_USER, "add", "-A", cwd=root)
    sh("git", *GIT_USER, "commit", "-qm", "snapshot", cwd=root)
    return root


POSTGRES_URL = os.environ.get("MSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(POSTGRES_URL).connect():
            return True
    except Exception:  # noqa: BLE001
        return False
