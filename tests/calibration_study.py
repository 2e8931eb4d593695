"""Issue 25's figures: one synthetic set of the issue's recipe through the pipeline, then the registered
head's expected calibration error on the test rows and the holdout without a temperature, with one
fitted on the validation split (the method before issue 25) and with the registered one (out-of-fold,
msc/train/crossfit.py, unless its probability_rules.fitted_on says validation; printed after the
row), beside the ECE of the true posteriors (the noise floor of a 10-bin ECE).

    PYTHONPATH=src python tests/calibration_study.py WORK LABELLED TEST SEED    # prints one table row
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import run_noisy_project  # noqa: E402


def posteriors(data: Path, guids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, C) true posteriors P(y | text cue, image cue) of ``guids`` and their (n,) labels, from cues.csv."""
    from msc.data import synthetic

    story = synthetic.stored_story(data)  # prior (its keys: the labels, in class order) and noises
    labels, k = list(story["prior"]), len(story["prior"])
    cues = {row["guid"]: row for row in csv.DictReader((data / "cues.csv").open())}
    probs = np.array([[story["prior"][y] * synthetic.cue_likelihood(cues[g]["text_cue"], y, story["text_noise"], k)
                       * synthetic.cue_likelihood(cues[g]["image_cue"], y, story["image_noise"], k) for y in labels]
                      for g in guids])
    return probs / probs.sum(1, keepdims=True), np.array([labels.index(cues[g]["label"]) for g in guids])


def study_row(work: Path, seed: int) -> str:
    from msc.config import load_config
    from msc.features.cache import open_cache
    from msc.features.splits import load_splits
    from msc.track.logged_model import logged_head
    from msc.track.registry import load_msc_model
    from msc.track.store import setup_mlflow
    from msc.train.calibration import expected_calibration_error, fit_temperature, with_temperature
    from msc.train.loop import predict_proba

    os.chdir(work)
    config = load_config("params.yaml")
    cache, _ = open_cache(config.data, config.model, config.features, config.train.device), setup_mlflow()
    splits = load_splits(config.data, cache)
    model = load_msc_model("models:/msc/Production")
    spec = logged_head("models:/msc/Production")[0]
    temperature = spec.temperature  # the registered one (head.json), fitted on spec.rules().fitted_on's rows
    test_rows = np.arange(cache.n_labelled, len(cache.guids))
    bayes, test_labels = posteriors(work / "data", [cache.guids[i] for i in test_rows])
    raw = {name: predict_proba(model.head, cache, rows) for name, rows in
           (("val", splits.val), ("holdout", splits.holdout), ("test", test_rows))}
    labels = {"val": cache.labels[splits.val], "holdout": cache.labels[splits.holdout], "test": test_labels}
    val_t = fit_temperature(raw["val"], labels["val"])
    cells = [f"{seed}", f"{(raw['test'].argmax(1) == test_labels).mean():.3f}", f"{val_t:.2f}", f"{temperature:.2f}"]
    for name in ("test", "holdout"):
        cells += [f"{expected_calibration_error(with_temperature(raw[name], t), labels[name]):.3f}"
                  for t in (1.0, val_t, temperature)]
    cells.append(f"{expected_calibration_error(bayes, test_labels):.3f}")
    return "| " + " | ".join(cells) + f" |  (registered T fitted on: {spec.rules().fitted_on})"


if __name__ == "__main__":
    work, labelled, test, seed = Path(sys.argv[1]), *map(int, sys.argv[2:5])
    run_noisy_project(work, labelled, test, seed)
    print("| seed | test accuracy | T val | T out-of-fold | test ECE raw | val T | out-of-fold T | holdout ECE raw "
          "| val T | out-of-fold T | test ECE of the true posteriors |")
    print(study_row(work.resolve(), seed))
