"""Which modality drove a prediction: the exact two-player Shapley split of its log-probability.

The heads know what a missing modality looks like: all-zero features, which modality dropout trains
them on and prediction uses for a missing file. So the value of a coalition is the head's output with
the other modality zeroed, and four runs of the head over features already computed (no extra
backbone pass) give the exact Shapley values of the predicted class's log-probability f:

    attr_text  = ½[(f(T,I) − f(∅,I)) + (f(T,∅) − f(∅,∅))]
    attr_image = ½[(f(T,I) − f(T,∅)) + (f(∅,I) − f(∅,∅))]

so that attr_text + attr_image = f(T,I) − f(∅,∅) exactly (efficiency). f is the log-probability that
the model reports, after its calibration map, of the label its decision rule gives the full post
(msc/model/calibrated.py). ``driver`` names the modality whose share is larger by more than
``driver_margin`` nats, else ``both``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from msc.model.batch import FeatureBatch, drop_modality
from msc.model.calibrated import CalibrationMap, ProbabilityRules, log_probs

EXPLANATION_COLUMNS = ("attr_text", "attr_image", "driver")
DRIVER_MARGIN = 0.1  # nats: the default of params.yaml's predict.driver_margin and of the served param


def without(batch: FeatureBatch, text: bool, image: bool) -> FeatureBatch:
    """A copy of ``batch`` with its text and/or image features zeroed, as for a missing modality."""
    copied = FeatureBatch(**{field.name: None if (value := getattr(batch, field.name)) is None else value.clone()
                             for field in dataclasses.fields(batch)})
    every = np.arange(len(batch.text_pooled))
    return drop_modality(copied, every if text else every[:0], every if image else every[:0])


@torch.no_grad()
def modality_attribution(head: torch.nn.Module, batch: FeatureBatch, rules: ProbabilityRules | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw probabilities (B, C), attr_text (B,), attr_image (B,)) of ``head`` on ``batch``: the Shapley
    split between the modalities of the log-probability, calibrated by ``rules``, of the label that
    ``rules``' decision rule gives the full batch (None: the raw softmax and its argmax)."""
    rules = rules or ProbabilityRules(CalibrationMap())
    raw = [torch.softmax(head(variant).float(), dim=-1).cpu().numpy()  # (B, C) per coalition
           for variant in (batch, without(batch, text=False, image=True), without(batch, text=True, image=False),
                           without(batch, text=True, image=True))]
    label = rules.predict(raw[0])[1]  # (B,)
    f_both, f_text, f_image, f_none = (log_probs(rules.calibration.apply(p))[np.arange(len(label)), label] for p in raw)
    attr_text = 0.5 * ((f_both - f_image) + (f_text - f_none))
    attr_image = 0.5 * ((f_both - f_text) + (f_image - f_none))
    return raw[0], attr_text, attr_image


def drivers(attr_text: np.ndarray, attr_image: np.ndarray, margin: float) -> list[str]:
    """Per row: ``text`` or ``image`` where its share exceeds the other's by more than ``margin``, else ``both``."""
    difference = attr_text - attr_image
    return ["text" if d > margin else "image" if d < -margin else "both" for d in difference]
