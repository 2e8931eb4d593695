"""DVC's views (issue 36, item 5): `dvc plots show` draws its charts offline (.dvc/config points it at
a page template with Vega inline; DVC's own loads Vega from a CDN and is blank without a network)."""

from __future__ import annotations

import re
import shutil

from tests.helpers import REPO, sh

TEMPLATE = REPO / ".dvc" / "plots" / "offline.html"


def test_dvc_plots_show_writes_a_page_that_needs_no_network(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    results = tmp_path / "results"
    results.mkdir()
    (results / "training_curves.csv").write_text("epoch,train_loss,val_loss,val_weighted_f1,val_accuracy\n"
                                                 "1,1.0,0.9,0.5,0.55\n2,0.8,0.85,0.6,0.62\n")
    (results / "holdout_predictions.csv").write_text("actual,predicted\npositive,positive\nneutral,negative\n")
    sh("git", "init", "-q", cwd=tmp_path)
    sh("dvc", "plots", "show", cwd=tmp_path)  # this venv's dvc, whether or not the venv is activated
    page = (tmp_path / "dvc_plots" / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in page and not re.search(r"<script[^>]+src=", page)
    assert page.count("vegaEmbed('#") == 3  # the confusion matrix and the two epoch charts of dvc.yaml
