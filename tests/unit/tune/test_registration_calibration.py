"""Registration's calibration when the fold models are unlike the head (issue 32): the rules are fitted on the
head's validation rows and say so (head.json's fitted_on), the label issues still rank every out-of-fold row,
under a map fitted on those rows, and the sentence reaches stderr."""

import io
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from msc.train.calibration_maps import fit_map, fit_rules
from msc.train.crossfit import CalibrationChoice, CalibrationRows, Refit, out_of_fold_probabilities
from msc.train.label_issues import rank_label_issues
from msc.train.loop import predict_proba, train_head
from msc.tune import registration


@pytest.mark.parametrize("fold_models_alike", [True, False])
def test_rules_fitted_on_the_chosen_rows_and_issues_ranked_out_of_fold(config, cache, splits, monkeypatch, capsys,
                                                                       fold_models_alike):
    train = replace(config.train, epochs=1)
    head = train_head(cache, splits.train, splits.val, train).head
    pool = np.concatenate([splits.train, splits.val])
    out_of_fold = CalibrationRows(pool, out_of_fold_probabilities(cache, pool, train, 1, 2, 0), cache.labels[pool], True)
    own = CalibrationRows(splits.val, predict_proba(head, cache, splits.val), cache.labels[splits.val], False)
    folds_map = fit_map("vector", out_of_fold.probs, out_of_fold.labels)
    choice = (CalibrationChoice(out_of_fold, out_of_fold, None, folds_map) if fold_models_alike else
              CalibrationChoice(own, out_of_fold, "the probability rules are fitted on the candidate's validation rows",
                                folds_map))
    monkeypatch.setattr(registration, "calibration_rows", lambda *args: choice)

    calibration = registration.fitted_calibration(head, cache, splits, Refit(train, 1, 2, 0), "val_weighted_f1")
    fitted = choice.fitted
    assert calibration.rules.fitted_on == ("out_of_fold" if fold_models_alike else "validation")
    expected = fit_rules(fitted.probs, fitted.labels, "val_weighted_f1")
    assert np.allclose(calibration.rules.calibration.scale, expected.calibration.scale, atol=1e-5)
    assert ("registration: the probability rules are fitted on the candidate's validation rows"
            in capsys.readouterr().err) != fold_models_alike
    issues = pd.read_csv(io.StringIO(calibration.label_issues), dtype={"id": str})
    ranking = rank_label_issues([cache.guids[r] for r in pool], out_of_fold.labels,
                                (calibration.rules.calibration if fold_models_alike else folds_map).apply(out_of_fold.probs),
                                cache.label_names)
    assert sorted(issues["id"]) == sorted(cache.guids[r] for r in pool)
    assert issues["id"].tolist() == ranking["id"].tolist()
