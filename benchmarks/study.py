"""Section ``study``: ``python -m src.tune --trials 30`` on the full real cache (a fresh study and
MLflow store under the work dir), and 10-trial studies on 25 % and 50 % of the labelled samples,
each on a cache cut from the full one."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import dataset_view, run_module, write_params
from msc.config import load_config
from msc.core.handoff import write_handoff
from msc.data.dataset import load_dataset
from msc.data.posts import DataSource
from msc.features.cache import FeatureCache
from msc.features.manifest import MANIFEST, array_record, cache_fingerprint, preprocessing_settings
from msc.features.screen import data_fingerprint

STUDIES = (("all", 1.0, 30), ("half", 0.5, 10), ("quarter", 0.25, 10))  # name, labelled share, trials
CACHE_ARRAYS = ("text_pooled", "text_tokens", "text_mask", "image_pooled", "image_tokens")


def study_trials(storage: str, study_name: str) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [{"number": t.number, "state": t.state.name, "fusion": t.params.get("train.fusion"),
             "hidden_dim": t.params.get("train.hidden_dim"), "epochs": t.last_step,
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None}
            for t in study.trials]


def subset_cache(cache: FeatureCache, params: Path) -> None:
    """The rows of ``cache`` that the data root of ``params`` lists, as a complete cache in that
    params file's features.dir, with the fingerprint and settings featurize would have written."""
    config = load_config(params)
    folder = Path(config.features.dir)
    dataset = load_dataset(config.data.source)
    index = {guid: i for i, guid in enumerate(cache.guids)}
    rows = np.array([index[s.guid] for s in dataset.samples])
    labelled = rows[: len(dataset.labelled)]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in CACHE_ARRAYS:
        np.save(folder / f"{name}.npy", cache.array(name)[rows])
    data_hash = data_fingerprint(dataset)
    sections = (config.data, config.model, config.features)
    manifest = replace(cache.manifest, data_fingerprint=data_hash, n_labelled=len(labelled),
                       fingerprint=cache_fingerprint(*sections, data_hash), preprocessing=preprocessing_settings(*sections),
                       guids=[s.guid for s in dataset.samples], labels=[s.label for s in dataset.labelled],
                       arrays={name: array_record(folder / f"{name}.npy") for name in CACHE_ARRAYS},
                       build_id=uuid.uuid4().hex)
    write_handoff(folder / MANIFEST, manifest, indent=None)


def run_study(args, work: Path, cache: FeatureCache, name: str, fraction: float, trials: int) -> dict:
    """One study of ``trials`` trials on ``fraction`` of the labelled samples, in ``work/study-<name>``."""
    project = work / f"study-{name}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    if fraction < 1.0:
        root = dataset_view(args.data_root, work / f"data-{name}", fraction)
        features = work / f"features-study-{name}"
    else:  # the featurize section's folder and cache (its extra unlisted rows are test rows)
        root, features = work / "data-all", args.features
    storage = f"sqlite:///{project / 'optuna.db'}"
    params = write_params(project / "params.yaml", root, args.backbone, features, tune={"storage": storage})
    if fraction < 1.0:
        subset_cache(cache, params)
    run_module("src.split", ["--params", str(params)], project)
    wall, _, _ = run_module("src.tune", ["--params", str(params), "--trials", str(trials)], project)
    study_name = json.loads((project / "results" / "metrics.json").read_text())["study_name"]
    trials_info = study_trials(storage, study_name)
    cumulative = np.cumsum([t["seconds"] or 0.0 for t in trials_info])
    return {"labelled": len(load_dataset(DataSource(root)).labelled), "trials": trials, "wall_seconds": wall,
            "trial_seconds_cumulative": {str(k): float(cumulative[k - 1]) for k in (10, 20, 30) if k <= trials},
            "trial_list": trials_info}


def bench_study(args, work: Path) -> dict:
    cache = FeatureCache(args.features)
    out = {}
    for name, fraction, trials in STUDIES:
        out[name] = run_study(args, work, cache, name, fraction, trials)
        print(f"study {name}: {trials} trials, {out[name]['wall_seconds']:.0f}s wall")
    return out
