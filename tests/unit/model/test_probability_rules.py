"""The probability rules in head.json (issue 32): an older head.json loads as its temperature alone with the
plain argmax, and the pyfunc applies the stored rules: calibrated p_<label>, the decision rule's label,
and label sets through the inference params ``coverage`` and ``class_conditional``."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from msc.core.handoff import SCHEMA_KEY
from msc.model.calibrated import CalibrationMap, DecisionRule, LabelSets, ProbabilityRules, label_set_names
from msc.model.spec import HeadSpec, head_spec, read_head_spec, with_calibration_spec
from msc.train.loop import train_head

RULES = ProbabilityRules(
    CalibrationMap(kind="vector", scale=(1.3, 0.7, 1.1), bias=(0.2, -0.4, 0.2)),
    DecisionRule(weights=(1.0, 1.8, 0.9)),
    LabelSets(scores=((0.1, 0.3, 0.5, 0.6), (0.2, 0.4, 0.7, 0.9), (0.05, 0.2, 0.45, 0.8))))


def spec_file(tmp_path, **fields):
    spec = replace(head_spec({"fusion": "late", "hidden_dim": 8, "dropout": 0.0}, 4, "models/tiny", "main", 77,
                             ("positive", "neutral", "negative")), **fields)
    path = tmp_path / "head.json"
    path.write_text(json.dumps(spec.to_dict()))
    return path


def test_a_head_json_of_version_2_loads_as_its_temperature_and_the_plain_argmax(tmp_path):
    path = spec_file(tmp_path, temperature=1.7)
    stored = json.loads(path.read_text())
    del stored["probability_rules"]
    path.write_text(json.dumps({**stored, SCHEMA_KEY: "head-spec@2"}))
    rules = read_head_spec(path).rules()
    assert rules == ProbabilityRules(CalibrationMap(kind="temperature", temperature=1.7))
    raw = np.array([[0.5, 0.3, 0.2], [0.1, 0.45, 0.45]])
    probs, labels, sets = rules.predict(raw)
    assert labels.tolist() == [0, 1] and sets is None and np.allclose(probs.sum(1), 1)


def test_the_rules_are_written_with_the_temperature_and_read_back(tmp_path):
    path = spec_file(tmp_path)
    assert read_head_spec(path).rules() == ProbabilityRules(CalibrationMap())  # a trial's model: no calibration
    with_calibration_spec(path, 1.2, RULES.to_dict())
    spec = read_head_spec(path)
    assert json.loads(path.read_text())[SCHEMA_KEY] == f"head-spec@{HeadSpec.VERSION}" == "head-spec@4"
    assert spec.temperature == 1.2 and spec.rules() == RULES


def test_the_pyfunc_applies_the_rules_and_answers_a_coverage(config, cache, splits, trained_project, sample_root):
    import mlflow

    from msc.track.logged_model import log_trial_model, registered_copy
    from msc.track.store import setup_mlflow

    setup_mlflow()
    head = train_head(cache, splits.train, splits.val, replace(config.train, epochs=1)).head
    with mlflow.start_run():  # a trial's model, and a registered copy of it with RULES
        trial_uri = log_trial_model(head, config.train, cache.dim, config.model.backbone, "main", 77,
                                    cache.label_names).model_uri
        registered_uri = registered_copy(trial_uri, 1.0, RULES.to_dict()).model_uri
    trusted = {"trusted_input": True}
    trial, registered = (mlflow.pyfunc.load_model(uri, model_config=trusted) for uri in (trial_uri, registered_uri))
    images = sorted((sample_root / "data").glob("*.jpg"))[:6]
    frame = pd.DataFrame({"text": ["so happy", "awful day", "a table", "love it", "meh", None],
                          "image": [str(p) for p in images]})
    columns = ["p_positive", "p_neutral", "p_negative"]
    raw = trial.predict(frame)[columns].to_numpy()
    probs, labels, members = RULES.predict(raw, 0.7)
    plain = registered.predict(frame)
    assert "label_set" not in plain.columns
    np.testing.assert_allclose(plain[columns].to_numpy(), probs, atol=1e-5)
    assert plain["label"].tolist() == [columns[i][2:] for i in labels]
    with_sets = registered.predict(frame, params={"coverage": 0.7})
    assert with_sets["label_set"].tolist() == label_set_names(members, ("positive", "neutral", "negative"))
    pd.testing.assert_frame_equal(with_sets.drop(columns="label_set"), plain)
    per_class = registered.predict(frame, params={"coverage": 0.7, "class_conditional": True})["label_set"].tolist()
    assert per_class == label_set_names(RULES.label_sets.apply(probs, 0.7, True), ("positive", "neutral", "negative"))
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(MlflowException, match="coverage is .*strictly between 0 and 1"):
            registered.predict(frame, params={"coverage": bad})
    with pytest.raises(MlflowException, match="registered without conformal label sets"):
        trial.predict(frame, params={"coverage": 0.9})
    with pytest.raises(MlflowException, match="class_conditional .* coverage is 0"):  # not a silent plain answer
        registered.predict(frame, params={"class_conditional": True})
    params = {p.name: p.default for p in mlflow.models.get_model_info(registered_uri).signature.params.params}
    assert params["coverage"] == 0.0 and params["class_conditional"] is False  # what a served request may send
