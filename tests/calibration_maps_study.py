"""Issue 32's study: which calibration map survives class weighting. Each generated set (msc/data/synthetic.py,
1000 labelled + 300 test posts, text noise 0.25, image noise 0.30) is split and featurized once with the tiny
random CLIP; then, in process and per weighting, the registered path is replayed on the cache: the head
trained on the training split and early-stopped on validation (msc/train/loop.py), its configuration trained
again on 5 stratified folds of train + validation for its kept epochs (msc/train/crossfit.py), every map
fitted on those out-of-fold probabilities (msc/train/calibration_maps.py), the decision weights and the
conformal scores too, and all of it scored on the 300 test posts, whose labels the generator kept.

    PYTHONPATH=src python tests/calibration_maps_study.py WORK [LABELS:SEED ...] [--issues]   # prints the tables

``--issues`` adds the label-issue table: the same sets with 10 % of train + validation labels flipped
(seeded, ids recorded), unweighted, and the top-k precision of cleanlab's ranking (k = flipped; chance 0.10).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LABEL_SETS = {2: "positive,negative", 3: "positive,neutral,negative", 5: "joy,calm,neutral,sad,angry"}
DEFAULT_SETS = ["2:1", "2:2", "3:1", "3:2", "5:1", "5:2"]
# (name, class_weight_power, boost of the rarest class): the issue's best trial had 0.945 and 2.04.
WEIGHTINGS = [("unweighted", 0.0, 1.0), ("weighted", 0.9, 2.0)]
LABELLED, TEST = 1000, 300


def prepare(work: Path, labels: str, seed: int) -> None:
    """A project in ``work``: params.yaml (committed, tiny CLIP on the CPU in fp32), the generated set,
    its splits and its feature cache; skipped when the cache's manifest is already there."""
    import yaml

    from msc.data import synthetic
    from tests.helpers import REPO, committed_params_text

    if (work / "features").exists():
        return
    params = yaml.safe_load(committed_params_text())
    params["model"].update(backbone="models/tiny-clip", device="cpu")
    params["features"].update(num_workers=0)
    params["train"].update(device="cpu", precision="fp32")
    params["data"]["labels"] = labels.split(",")
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    synthetic.write_dataset(work / "data", LABELLED + TEST, seed, labels.split(","), text_noise=0.25,
                            image_noise=0.30, test_fraction=TEST / (LABELLED + TEST))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args in (["src.sample", "--no-data", "--backbone-out", "models/tiny-clip"], ["src.split"], ["src.featurize"]):
        result = subprocess.run([sys.executable, "-m", *args], cwd=work, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def replay(work: Path, power: float, boost: float, flip_rate: float = 0.0) -> dict:
    """The registered path on ``work``'s cache with class_weight_power ``power`` and the rarest class boosted by
    ``boost``: the head, its out-of-fold probabilities of train + validation, and the 300 test posts' raw
    probabilities and labels. ``flip_rate``: that share of train + validation labels flipped first (seeded)."""
    from msc.config import load_config
    from msc.features.cache import open_cache
    from msc.features.splits import load_splits
    from msc.train.crossfit import out_of_fold_probabilities
    from msc.train.loop import predict_proba, train_head
    from tests.calibration_study import posteriors

    os.chdir(work)
    config = load_config("params.yaml")
    cache = open_cache(config.data, config.model, config.features, config.train.device)
    splits = load_splits(config.data, cache)
    pool = np.concatenate([splits.train, splits.val])
    flipped = flip(cache, pool, flip_rate, config.data.split_seed)
    rarest = cache.label_names[int(np.bincount(cache.labels[splits.train]).argmin())]
    train = replace(config.train, class_weight_power=power, class_boost={rarest: boost} if boost != 1 else {})
    result = train_head(cache, splits.train, splits.val, train)
    oof = out_of_fold_probabilities(cache, pool, train, result.best_epoch, 5, config.data.split_seed)
    test_rows = np.arange(cache.n_labelled, len(cache.guids))
    _, test_labels = posteriors(work / "data", [cache.guids[i] for i in test_rows])
    return {"oof": oof, "oof_labels": cache.labels[pool].copy(), "test": predict_proba(result.head, cache, test_rows),
            "test_labels": test_labels, "names": cache.label_names, "ids": [cache.guids[i] for i in pool],
            "flipped": flipped, "metric": train.select_metric}


def flip(cache, pool: np.ndarray, rate: float, seed: int) -> set[str]:
    """Flip ``rate`` of ``pool``'s labels in ``cache`` (in memory) to another label; their guids."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(pool, round(rate * len(pool)), replace=False)
    for row in rows:
        cache.labels[row] = rng.choice([c for c in range(len(cache.label_names)) if c != cache.labels[row]])
    return {cache.guids[row] for row in rows}


def calibration_row(name: str, run: dict) -> str:
    """One row of docs/calibration.md's table: test ECE with each map, accuracy and the select metric with
    the plain argmax, the calibrated argmax and the decision rule, label-set coverage at 0.8 and 0.9."""
    from msc.train.calibration import expected_calibration_error
    from msc.train.calibration_maps import fit_map
    from msc.train.conformal import coverage_report, fit_label_sets
    from msc.train.decision import fit_decision_rule, score_of
    from msc.train.metrics import confusion_of

    labels, k = run["test_labels"], len(run["names"])
    maps = {kind: fit_map(kind, run["oof"], run["oof_labels"]) for kind in ("temperature", "bcts", "vector", "dirichlet")}
    cells = [name, f"{expected_calibration_error(run['test'], labels):.3f}"]
    cells += [f"{expected_calibration_error(m.apply(run['test']), labels):.3f}" for m in maps.values()]
    calibrated, oof_calibrated = maps["bcts"].apply(run["test"]), maps["bcts"].apply(run["oof"])
    rule = fit_decision_rule(oof_calibrated, run["oof_labels"], run["metric"])
    for predicted in (run["test"].argmax(1), calibrated.argmax(1), rule.apply(calibrated)):
        confusion = confusion_of(labels, predicted, k)
        cells += [f"{score_of(confusion, 'accuracy'):.3f}", f"{score_of(confusion, run['metric']):.3f}"]
    sets = fit_label_sets(oof_calibrated, run["oof_labels"])
    cells += [f"{coverage_report(sets.apply(calibrated, c), labels, run['names'])['coverage']:.3f}" for c in (0.8, 0.9)]
    cells.append(f"{coverage_report(sets.apply(calibrated, 0.9), labels, run['names'])['mean_set_size']:.2f}")
    cells.append(" ".join(f"{w:.2f}" for w in rule.weights))
    rare = int(np.bincount(run["oof_labels"], minlength=k).argmin())  # the mean p of the rarest class against its share
    cells.append(f"{(labels == rare).mean():.3f}: " + " / ".join(
        f"{p[:, rare].mean():.3f}" for p in (run["test"], maps["temperature"].apply(run["test"]), calibrated)))
    return "| " + " | ".join(cells) + " |"


HEADER = ("| set, weighting | test ECE raw | T | BCTS | vector | Dirichlet | accuracy raw | select raw "
          "| accuracy BCTS argmax | select BCTS argmax | accuracy BCTS + rule | select BCTS + rule "
          "| coverage 0.8 | coverage 0.9 | mean set size 0.9 | rule weights | rarest class share: mean p raw / T / BCTS |")


def issues_row(name: str, run: dict) -> str:
    from msc.train.label_issues import rank_label_issues, top_k_precision

    table = rank_label_issues(run["ids"], run["oof_labels"], run["oof"], run["names"])
    flagged = table[table["flagged"]]
    return (f"| {name} | {len(run['flipped'])} of {len(run['ids'])} | {top_k_precision(table, run['flipped']):.3f} "
            f"| {len(flagged)} | {flagged['id'].isin(run['flipped']).mean():.3f} |")


if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve()
    specs = [a for a in sys.argv[2:] if ":" in a] or DEFAULT_SETS
    print(HEADER, flush=True)
    for spec in specs:
        k, seed = map(int, spec.split(":"))
        prepare(root / f"set{k}-{seed}", LABEL_SETS[k], seed)
        for weighting, power, boost in WEIGHTINGS:
            print(calibration_row(f"{k} labels seed {seed}, {weighting}", replay(root / f"set{k}-{seed}", power, boost)),
                  flush=True)
    if "--issues" in sys.argv:
        print("| set (unweighted, 10 % of train + validation flipped) | flipped | top-k precision (k = flipped) "
              "| flagged by cleanlab | precision of the flagged |", flush=True)
        for spec in specs:
            k, seed = map(int, spec.split(":"))
            print(issues_row(f"{k} labels seed {seed}", replay(root / f"set{k}-{seed}", 0.0, 1.0, 0.1)), flush=True)
