"""Issue 32's acceptance: the registered model's test ECE is 0.08 or less on six generated sets that cover
2, 3 and 5 labels, each with class-weighted trials (class_weight_power 0.9, the rarest class boosted by 2)
and with unweighted ones; and its label sets reach their coverage on held-out posts.

Each set goes through the commands a user types (tests/helpers.py ``run_rules_project``: split, featurize,
``tune --trials 6``, ``predict --true-labels --coverage 0.9``) in a fresh project with the tiny random
CLIP. About 2 minutes a set on 2 idle cores (11 min 33 s for the six at 0fd6845): slow tier. Run one set with
``python -m pytest -m slow -s tests/slow/test_calibration_six_sets.py -k "3-weighted"``.

The coverage is checked within 0.03 of 0.9 and of 0.8 (a second ``predict --coverage 0.8``) on 1000 test
posts (standard errors 0.0095 and 0.013); 300 posts would leave 0.017 at 0.9 and fail a correct rule one
time in ten.
"""

import csv
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO, run_rules_project, sh

GOAL = 0.08
COVERAGE_SLACK = 0.03
LABELS = {2: ("positive", "negative"), 3: ("positive", "neutral", "negative"), 5: ("a", "b", "c", "d", "e")}
# (classes, weighted, data seed): seeds named so that a failure can be rerun alone
SETS = [(2, True, 301), (2, False, 302), (3, True, 303), (3, False, 304), (5, True, 305), (5, False, 306)]


@pytest.mark.parametrize(("classes", "weighted", "seed"), SETS,
                         ids=[f"{c}-{'weighted' if w else 'unweighted'}-{s}" for c, w, s in SETS])
def test_the_registered_models_test_ece_and_coverage(tmp_path, classes, weighted, seed):
    out = run_rules_project(tmp_path, LABELS[classes], 1000, 1000, seed, weighted, trials=6)
    ece, low, high = map(float, re.search(r"expected calibration error ([\d.]+) \[([\d.]+), ([\d.]+)\]", out).groups())
    truth = {row["guid"]: row["label"] for row in csv.DictReader((tmp_path / "data" / "cues.csv").open())}
    reached = {0.9: coverage(tmp_path, truth)}
    sh(sys.executable, "-m", "src.predict", "--model-uri", "models:/msc/Production", "--coverage", "0.8", cwd=tmp_path,
       env={"PYTHONPATH": str(REPO)})  # the project folder holds no src/: run_rules_project's way
    reached[0.8] = coverage(tmp_path, truth)
    holdout = json.loads((tmp_path / "results" / "metrics.json").read_text())["holdout"]
    print(f"{classes} labels, {'weighted' if weighted else 'unweighted'}, seed {seed}: test ECE {ece:.4f} "
          f"[{low:.4f}, {high:.4f}], coverage at 0.9 {reached[0.9][0]:.3f} (mean set size {reached[0.9][1]:.2f}), "
          f"at 0.8 {reached[0.8][0]:.3f} ({reached[0.8][1]:.2f}); holdout ECE {holdout['ece']:.4f}, temperature "
          f"alone {holdout['ece_temperature_only']:.4f}, raw {holdout['ece_uncalibrated']:.4f}")
    assert ece <= GOAL, f"test ECE {ece:.4f} [{low:.4f}, {high:.4f}] above the goal {GOAL}"
    for target, (covered, _) in reached.items():
        assert abs(covered - target) <= COVERAGE_SLACK, (target, covered)


def coverage(project, truth: dict[str, str]) -> tuple[float, float]:
    """The share of test posts whose true label is in results/test_label_sets.csv's set, and the mean set size."""
    sets = pd.read_csv(project / "results" / "test_label_sets.csv", dtype={"guid": str}, keep_default_na=False)
    covered = float(np.mean([truth[g] in s.split("|") for g, s in zip(sets["guid"], sets["label_set"])]))
    return covered, float(sets["label_set"].map(lambda s: len(s.split("|")) if s else 0).mean())
