"""DVC's views (issue 36, item 5): `dvc plots show` draws its charts offline (.dvc/config points it at
a page template with Vega inline; DVC's own loads Vega from a CDN and is blank without a network)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess

import pytest
from conftest import REPO

TEMPLATE = REPO / ".dvc" / "plots" / "offline.html"


def test_dvc_plots_use_the_offline_template():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    assert (REPO / ".dvc" / config["plots"]["html_template"]) == TEMPLATE
    page = TEMPLATE.read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # {scripts} is DVC's CDN tags
    assert not re.search(r"<script[^>]+src=", page)
    assert "window.vegaEmbed=" in page


@pytest.mark.integration
def test_dvc_plots_show_writes_a_page_that_needs_no_network(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    results = tmp_path / "results"
    results.mkdir()
    (results / "training_curves.csv").write_text("epoch,train_loss,val_loss,val_weighted_f1,val_accuracy\n"
                                                 "1,1.0,0.9,0.5,0.55\n2,0.8,0.85,0.6,0.62\n")
    (results / "holdout_predictions.csv").write_text("actual,predicted\npositive,positive\nneutral,negative\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    shown = subprocess.run(["dvc", "plots", "show"], cwd=tmp_path, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    page = (tmp_path / "dvc_plots" / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in page and not re.search(r"<script[^>]+src=", page)
    assert page.count("vegaEmbed('#") == 3  # the confusion matrix and the two epoch charts of dvc.yaml


def test_scores_are_numbers_under_keys_metrics_json_does_not_have():
    """results/scores.json: what `dvc metrics show results/scores.json` and `dvc exp show` compare, in
    80 columns; a key metrics.json also had would make DVC prefix the column with the file name."""
    from types import SimpleNamespace

    from src.tune import scores

    holdout = {"weighted_f1": 0.74859, "accuracy": 0.75, "macro_f1": 0.70139, "ece": 0.21065, "temperature": 0.77083,
               "weighted_f1_ci95": [0.6, 0.89], "ece_uncalibrated": 0.22}
    written = scores(SimpleNamespace(holdout=holdout, best_value=0.80296, version=3, gate="a sentence"))
    assert written == {"weighted_f1": 0.7486, "accuracy": 0.75, "macro_f1": 0.7014, "ece": 0.2107,
                       "temperature": 0.7708, "objective": 0.803}
    import dataclasses

    from msc.tune.summary import TuneSummary

    summary_keys = {field.name for field in dataclasses.fields(TuneSummary)} | {"schema"}
    assert not set(written) & summary_keys
