"""The report's section on the registered model's probabilities (issue 32): holdout coverage and set size per
class at each coverage metrics.json holds, and the top label issues with their tweet and a thumbnail."""

import numpy as np

from msc.analysis.report_calibration import TOP_ISSUES, calibration_section
from msc.core.labels import COURSE_LABELS
from msc.data.dataset import read_posts
from msc.data.posts import DataSource
from msc.model.calibrated import LabelSets
from msc.train.conformal import coverage_report
from msc.train.label_issues import rank_label_issues

HOLDOUT = {"accuracy": 0.8, "weighted_f1": 0.79, "temperature": 1.04, "calibration": "vector", "ece": 0.05,
           "ece_temperature_only": 0.13, "ece_uncalibrated": 0.15}


def test_the_section_shows_coverage_per_class_and_the_top_label_issues(sample_root, tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), 200)
    labels = rng.integers(0, 3, 200)
    sets = LabelSets(scores=tuple(tuple(sorted(rng.uniform(0, 1, 50))) for _ in range(3)))
    holdout = {**HOLDOUT, "log_loss": 0.64, "log_loss_temperature_only": 0.7, "log_loss_uncalibrated": 0.76,
               "label_sets": {str(c): coverage_report(sets.apply(probs, c), labels, COURSE_LABELS) for c in (0.8, 0.9)}}
    posts = read_posts(DataSource(sample_root), with_test=False).labelled[:30]
    issues = rank_label_issues([p.guid for p in posts], np.array([COURSE_LABELS.index(p.label) for p in posts]),
                               rng.dirichlet(np.ones(3), len(posts)), COURSE_LABELS)
    (tmp_path / "label_issues.csv").write_text(issues.to_csv(index=False))
    figures = tmp_path / "figures"
    text = "\n".join(calibration_section(holdout, COURSE_LABELS, tmp_path / "label_issues.csv", DataSource(sample_root),
                                         "auto", figures))
    assert "0.050 with its `vector` map, 0.130 with the temperature alone (T = 1.040), 0.150 raw" in text
    assert "Its log loss is 0.640 (0.700 with the temperature alone, 0.760 raw)." in text
    assert "disagree" not in text  # ECE 0.05 < 0.15 raw and log loss 0.64 < 0.76 raw: both say the map helped
    holdout["ece_uncalibrated"] = 0.03  # now the ECE says the map hurt, the log loss that it helped
    text = "\n".join(calibration_section(holdout, COURSE_LABELS, tmp_path / "label_issues.csv", DataSource(sample_root),
                                         "auto", figures))
    assert "The two disagree on whether the map helped; trust the log loss" in text
    for asked in ("0.8", "0.9"):
        report = holdout["label_sets"][asked]
        neutral = report["per_class"]["neutral"]
        assert (f"| {asked} | {report['coverage']:.3f} | {report['mean_set_size']:.2f} |" in text
                and f"{neutral['coverage']:.3f}, {neutral['mean_set_size']:.2f} ({neutral['rows']})" in text)
    top = issues.iloc[0]
    first_text = (sample_root / "data" / f"{top['id']}.txt").read_text(errors="replace").split()[0]
    row = next(line for line in text.splitlines() if line.startswith(f"| {top['id']} |"))
    assert f"| {top['given_label']} | {top['suggested_label']} | {top['score']:.3f} | ![](figures/label_issues/0.jpg) |" in row
    assert first_text in row
    assert len(list((figures / "label_issues").glob("*.jpg"))) == TOP_ISSUES
    assert f"all {len(posts)} in [label_issues.csv](label_issues.csv)" in text


def test_the_section_says_what_an_older_registration_lacks(sample_root, tmp_path):
    text = "\n".join(calibration_section(HOLDOUT, COURSE_LABELS, tmp_path / "label_issues.csv", DataSource(sample_root),
                                         "auto", tmp_path / "figures"))
    assert "has no conformal label sets (registered before them)" in text
    assert "log loss" not in text  # metrics.json written before the log loss
    assert "No `label_issues.csv` (written by `python -m src.tune` since issue 32)" in text


def test_a_summary_without_holdout_scores_is_said(sample_root, tmp_path):
    text = "\n".join(calibration_section({}, COURSE_LABELS, tmp_path / "label_issues.csv", DataSource(sample_root),
                                         "auto", tmp_path / "figures"))
    assert "holds no holdout scores of a registered model: run `python -m src.tune`" in text
