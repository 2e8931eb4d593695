"""The report's reliability figure says whose temperature it shows (issue 36): the ablation's head's,
fitted on validation, not the registered model's of metrics.json."""

from __future__ import annotations

from msc.analysis.report_figures import RELIABILITY_NOTE, reliability_figure


def test_reliability_figure_says_whose_temperature():
    bins = [{"confidence": 0.55, "accuracy": 0.5, "samples": 10}, {"confidence": 0.85, "accuracy": 0.8, "samples": 20}]
    figure = reliability_figure({"before": bins, "after": bins, "temperature": 1.7, "ece": 0.03,
                                 "ece_uncalibrated": 0.08}, "late")
    texts = [text.get_text() for text in figure.texts]
    assert RELIABILITY_NOTE in texts
    assert "validation" in RELIABILITY_NOTE and "metrics.json" in RELIABILITY_NOTE
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "T = 1.70, ECE 0.030" in legend
