"""DVC's views (issue 36, item 5): `dvc plots show` draws its charts offline (.dvc/config points it at
a page template with Vega inline; DVC's own loads Vega from a CDN and is blank without a network)."""

from __future__ import annotations

import configparser
import re

from tests.helpers import REPO

TEMPLATE = REPO / ".dvc" / "plots" / "offline.html"


def test_dvc_plots_use_the_offline_template():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    assert (REPO / ".dvc" / config["plots"]["html_template"]) == TEMPLATE
    page = TEMPLATE.read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # {scripts} is DVC's CDN tags
    assert not re.search(r"<script[^>]+src=", page)
    assert "window.vegaEmbed=" in page


def test_scores_are_numbers_under_keys_metrics_json_does_not_have():
    """results/scores.json: what `dvc metrics show results/scores.json` and `dvc exp show` compare, in
    80 columns; a key metrics.json also had would make DVC prefix the column with the file name."""
    from types import SimpleNamespace

    from src.tune import scores

    holdout = {"weighted_f1": 0.74859, "accuracy": 0.75, "macro_f1": 0.70139, "ece": 0.21065, "temperature": 0.77083,
               "weighted_f1_ci95": [0.6, 0.89], "ece_uncalibrated": 0.22}
    registration = SimpleNamespace(holdout=holdout, version=3, gate="a sentence")
    written = scores(SimpleNamespace(registration=registration, best_value=0.80296))
    assert written == {"weighted_f1": 0.7486, "accuracy": 0.75, "macro_f1": 0.7014, "ece": 0.2107,
                       "temperature": 0.7708, "objective": 0.803}
    from msc.track.summary import TuneSummary

    summary_keys = TuneSummary.stored_keys() | {"schema"}  # metrics.json's top-level keys
    assert not set(written) & summary_keys
