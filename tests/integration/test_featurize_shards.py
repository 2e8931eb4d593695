"""Issue 34, item 2, done when: a cache built in two shards by two processes in separate project
copies (as two machines would), merged, holds the one-process cache's values, and the same study on
either cache gives the same trial values.

Every featurize is the command `python -m src.featurize` (the same torch threads: another thread count
can round a float differently), at batch size 1: a row is then computed alone wherever it is, so the
comparison is bit for bit. At larger batch sizes a batch's shape can round a float differently (by one
fp16 step, as changing features.batch_size does in one process; tests/unit/features/test_shards.py
compares at the default).
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import optuna
import yaml

from msc.config import load_config, with_overrides
from msc.data.split import write_splits
from msc.data.synthetic import write_dataset
from msc.features.cache import FeatureCache
from msc.model.tiny import write_backbone
from msc.tune.runner import tune
from tests.helpers import REPO, make_config

SETTINGS = {"features.augment_views": 2, "features.text_augment_views": 1, "features.top_layers": 1,
            "features.batch_size": 1, "tune.trials": 2, "train.epochs": 2}


def machine(folder: Path, data: Path, backbone: Path) -> Path:
    """A project copy with its own data and backbone copies and params.yaml, as on another machine."""
    shutil.copytree(REPO / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(data, folder / "data")
    shutil.copytree(backbone, folder / "tiny-clip")
    config = make_config(folder / "data", folder / "tiny-clip", folder / "features", SETTINGS)
    config = with_overrides(config, {"features.dir": "features", "data.splits_dir": "splits"})
    (folder / "params.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    return folder


def command(folder: Path, *args: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": ""}  # the copy's own src/, as a user types it there
    environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "src.featurize", *args], cwd=folder, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, f"{process.args}: {out[-2000:]}\n{err[-2000:]}"
    return out


def trial_values(project: Path, config, monkeypatch) -> list[float]:
    """The values of a two-trial study run in ``project`` on ``config``'s cache."""
    monkeypatch.chdir(project)
    write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    tune(config)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{project / 'optuna.db'}")
    return [trial.value for trial in sorted(study.trials, key=lambda trial: trial.number)]


def test_two_machines_shards_merge_into_the_one_process_cache(tmp_path, monkeypatch):
    write_dataset(tmp_path / "data", n=60, seed=3)
    write_backbone(tmp_path / "tiny-clip", "tiny", seed=0)
    machines = [machine(tmp_path / name, tmp_path / "data", tmp_path / "tiny-clip") for name in ("one", "two", "hub")]
    running = [command(folder, "--shard", f"{i}/2") for i, folder in enumerate(machines[:2], start=1)]
    for process in running:
        assert "feature cache shard" in finished(process)
    hub = machines[2]
    for i, folder in enumerate(machines[:2], start=1):  # each machine's shard folder, copied to one place
        shutil.copytree(folder / "features" / "shards" / f"{i}-of-2", hub / "features" / "shards" / f"{i}-of-2")
    assert "merged from 2 shards" in finished(command(hub, "--merge"))
    assert "fresh, reused" in finished(command(hub)), "a one-process featurize takes the merged cache as its own"

    # One process, `python -m src.featurize` as the shards ran (torch's threads alike), in a project of its own
    # that reads the hub's data and backbone.
    alone = tmp_path / "single"
    shutil.copytree(hub / "src", alone / "src")
    shutil.copy(hub / "params.yaml", alone / "params.yaml")
    finished(command(alone))
    config = load_config(alone / "params.yaml")
    single, merged = FeatureCache(alone / "features"), FeatureCache(hub / "features")
    assert merged.fingerprint == single.fingerprint and merged.guids == single.guids
    assert merged.manifest.image_quality == single.manifest.image_quality
    assert set(merged.manifest.arrays) == set(single.manifest.arrays) and "aug_text_hidden1" in single.manifest.arrays
    for name in single.manifest.arrays:
        assert np.array_equal(merged.array(name), single.array(name)), name

    values = trial_values(alone, config, monkeypatch)
    assert len(values) == 2 and None not in values
    assert trial_values(hub, load_config(hub / "params.yaml"), monkeypatch) == values
