"""Calibration maps (msc/train/calibration_maps.py) and their shared form (msc/model/calibrated.py)."""

import json

import numpy as np
import pytest

from msc.core.errors import UserError
from msc.model.calibrated import CalibrationMap, softmax
from msc.train.calibration import expected_calibration_error, with_temperature
from msc.train.calibration_maps import fit_map

SHIFT = np.array([-0.6, 0.9, -0.3])  # class weighting's push towards class 1, the rare one


def shifted_set(n: int, seed: int):
    """True logits (n, 3) of a 60/12/28 prior, labels drawn from them, and what a class-weighted,
    under-confident head reports: softmax(0.6 z + SHIFT)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 2.0 + np.log([0.60, 0.12, 0.28])
    labels = np.array([rng.choice(3, p=p) for p in softmax(z)])
    return softmax(0.6 * z + SHIFT), labels


def test_bcts_undoes_a_class_shift_that_a_temperature_cannot():
    raw, labels = shifted_set(8000, 0)
    test_raw, test_labels = shifted_set(4000, 1)
    bcts, temperature = fit_map("bcts", raw, labels), fit_map("temperature", raw, labels)
    # log raw = 0.6 z + SHIFT - row constant, so T = 0.6 and b = -SHIFT / 0.6 (centred) give back z.
    assert bcts.temperature == pytest.approx(0.6, abs=0.05)
    centred = -SHIFT / 0.6 - (-SHIFT / 0.6).mean()
    assert np.allclose(bcts.bias, centred, atol=0.15)
    ece = {name: expected_calibration_error(m.apply(test_raw), test_labels)
           for name, m in (("bcts", bcts), ("temperature", temperature))}
    assert ece["bcts"] < 0.02
    # the rare class's probability mass: back to its share with the bias, still inflated with T alone
    share = (test_labels == 1).mean()
    assert abs(bcts.apply(test_raw)[:, 1].mean() - share) < 0.01 < 0.05 < temperature.apply(test_raw)[:, 1].mean() - share


@pytest.mark.parametrize("kind", ["bcts", "vector", "dirichlet"])
def test_every_map_fits_at_least_as_well_as_none_and_round_trips_through_json(kind):
    raw, labels = shifted_set(3000, 2)
    fitted = fit_map(kind, raw, labels)

    def nll(probs):
        return -np.log(probs[np.arange(len(labels)), labels]).mean()

    assert nll(fitted.apply(raw)) < nll(raw) - 0.01
    stored = json.loads(json.dumps(fitted.to_dict()))
    assert stored["kind"] == kind and len(stored["bias"]) == 3
    assert np.allclose(CalibrationMap.from_dict(stored).apply(raw), fitted.apply(raw), atol=1e-5)


def test_the_temperature_map_is_the_temperature_and_identity_changes_nothing():
    raw, labels = shifted_set(500, 3)
    fitted = fit_map("temperature", raw, labels)
    assert fitted.to_dict() == {"kind": "temperature", "temperature": round(fitted.temperature, 6)}
    assert np.allclose(fitted.apply(raw), with_temperature(raw, fitted.temperature), atol=1e-6)
    assert np.allclose(CalibrationMap().apply(raw), raw, atol=1e-6)


def test_a_stored_map_for_other_classes_or_of_an_unknown_kind_is_refused_in_one_sentence():
    raw, labels = shifted_set(500, 4)
    two_classes = CalibrationMap(kind="bcts", temperature=1.0, bias=(0.1, -0.1))
    with pytest.raises(UserError, match="2 entries and the model predicts 3 classes"):
        two_classes.apply(raw)
    with pytest.raises(UserError, match="kind is 'platt'"):
        CalibrationMap.from_dict({"kind": "platt"})


def test_the_rules_fit_together_and_apply_from_their_stored_form():
    from msc.model.calibrated import ProbabilityRules
    from msc.train.calibration_maps import fit_rules

    raw, labels = shifted_set(2000, 5)
    rules = fit_rules(raw, labels, "val_macro_f1")
    stored = ProbabilityRules.from_dict(json.loads(json.dumps(rules.to_dict())))
    probs, predicted, sets = stored.predict(raw, coverage=0.9)
    assert np.allclose(probs, rules.calibration.apply(raw), atol=1e-5)
    assert (predicted == rules.decision.apply(rules.calibration.apply(raw))).all()
    assert sets.shape == raw.shape and sets[np.arange(len(labels)), labels].mean() >= 0.88
    # a head.json from before: its temperature, the plain argmax, and no coverage to ask
    old = ProbabilityRules.from_dict({}, temperature=0.8)
    assert (old.predict(raw)[1] == raw.argmax(1)).all()
    with pytest.raises(UserError, match="registered without conformal label sets"):
        old.predict(raw, coverage=0.9)
