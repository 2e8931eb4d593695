"""What a head's probabilities become before anyone reads them: the calibration map, the label rule and
the conformal label sets, each fitted at registration on out-of-fold rows (msc/train/calibration_maps.py,
decision.py, conformal.py) and stored as a small dict (head.json), so that every entry point (the pyfunc,
``src.predict``, the served model, the report) applies the same numpy code. Numpy only: a logged model
ships this layer.

Every map works on log-probabilities, (n, C): log p differs from the head's logits by one constant per
row, which a temperature ignores; for the maps with a bias or a per-class scale it is a reparametrisation
of the same family, fitted on the same log p it is applied to.

Numpy and the standard library only, and msc.core.errors where it exists: the ONNX bundle copies this file
beside its predict.py and applies the same rules (msc/model/onnx_bundle.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

try:
    from msc.core.errors import UserError
except ImportError:  # an ONNX bundle's predict.py loads this file alone, without msc (msc/model/bundle_predict.py)
    UserError = ValueError

LOG_FLOOR = 1e-12  # probabilities are clipped here before the log, as msc/train/calibration.py does
MAP_KINDS = ("temperature", "bcts", "vector", "dirichlet")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, C) ``logits``, stable for any scale."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def log_probs(probs: np.ndarray) -> np.ndarray:
    """(n, C) log-probabilities in float64, clipped at LOG_FLOOR."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), LOG_FLOOR, None))


def check_classes(what: str, values, classes: int) -> None:
    """A stored per-class vector must have one entry per class of the probabilities it meets."""
    if values is not None and len(values) != classes:
        raise UserError(f"head.json's {what} has {len(values)} entries and the model predicts {classes} classes; "
                        "register the model again (python -m src.tune) so that they are fitted together")


@dataclass(frozen=True)
class CalibrationMap:
    """calibrated = softmax(transform(log p) + bias), transform by kind: temperature and bcts (bias-
    corrected temperature scaling, Alexandari et al. 2020) divide by ``temperature``; vector multiplies
    by ``scale`` (C,); dirichlet multiplies by ``matrix`` (C, C) (calibrated logits = log p @ matrix.T)."""

    kind: str = "temperature"
    temperature: float = 1.0
    scale: tuple[float, ...] | None = None
    matrix: tuple[tuple[float, ...], ...] | None = None
    bias: tuple[float, ...] | None = None

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """(n, C) calibrated probabilities of (n, C) ``probs``; float64."""
        z, classes = log_probs(probs), np.shape(probs)[1]
        for what, values in (("scale", self.scale), ("matrix", self.matrix), ("bias", self.bias)):
            check_classes(f"calibration {what}", values, classes)
        if self.matrix is not None:
            z = z @ np.asarray(self.matrix).T
        elif self.scale is not None:
            z = z * np.asarray(self.scale)
        else:
            z = z / self.temperature
        return softmax(z + np.asarray(self.bias) if self.bias is not None else z)

    def to_dict(self) -> dict:
        """The head.json form: the kind and its parameters only, e.g. {"kind": "bcts", "temperature": T, "bias": [...]}."""
        fields = {"temperature": self.temperature if self.kind in ("temperature", "bcts") else None,
                  "scale": self.scale, "matrix": self.matrix, "bias": self.bias}
        return {"kind": self.kind, **{key: rounded(value) for key, value in fields.items() if value is not None}}

    @classmethod
    def from_dict(cls, stored: dict) -> CalibrationMap:
        if stored.get("kind") not in MAP_KINDS:
            raise UserError(f"head.json's calibration kind is {stored.get('kind')!r}, not one of {', '.join(MAP_KINDS)}; "
                            "this msc cannot apply it: install the msc version that registered the model")
        tupled = {key: tuple(map(float, stored[key])) for key in ("scale", "bias") if stored.get(key) is not None}
        if stored.get("matrix") is not None:
            tupled["matrix"] = tuple(tuple(map(float, row)) for row in stored["matrix"])
        return cls(kind=stored["kind"], temperature=float(stored.get("temperature", 1.0)), **tupled)


@dataclass(frozen=True)
class DecisionRule:
    """The label: argmax over classes of calibrated p (n, C) times ``weights`` (C,), fitted on out-of-fold rows
    to maximise ``metric`` (train.select_metric). Weights of 1 are the plain argmax; a class with weight above
    1 can be the label while another class has the higher probability."""

    weights: tuple[float, ...]
    metric: str = "val_weighted_f1"

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """(n,) class ids of (n, C) calibrated ``probs``; ties go to the lower class id, as np.argmax."""
        check_classes("decision weights", self.weights, np.shape(probs)[1])
        return (np.asarray(probs) * np.asarray(self.weights)).argmax(axis=1)

    def to_dict(self) -> dict:
        return {"kind": "weighted_argmax", "weights": rounded(self.weights), "metric": self.metric}

    @classmethod
    def from_dict(cls, stored: dict) -> DecisionRule:
        if stored.get("kind") != "weighted_argmax":
            raise UserError(f"head.json's decision kind is {stored.get('kind')!r}, not weighted_argmax; install the "
                            "msc version that registered the model")
        return cls(weights=tuple(map(float, stored["weights"])), metric=str(stored.get("metric", "")))


@dataclass(frozen=True)
class LabelSets:
    """Split-conformal label sets (the LAC score 1 - p_label; Sadinle, Lei and Wasserman 2019) from the sorted
    scores (per class) of out-of-fold rows under the calibrated probabilities. Any ``coverage`` can be asked at
    prediction time: the threshold is the ceil((n + 1) coverage)-th smallest of the n scores (all of them, or
    the given label's class only when class-conditional), infinite when that exceeds n."""

    scores: tuple[tuple[float, ...], ...]  # per class c: sorted 1 - p_c of the out-of-fold rows labelled c

    def thresholds(self, coverage: float, class_conditional: bool = False) -> np.ndarray:
        """(C,) largest score a label may have to stay in a set at ``coverage``; one value repeated if marginal."""
        if not 0 < coverage < 1:
            raise UserError(f"coverage is {coverage}; it must be strictly between 0 and 1, e.g. 0.9")
        pools = self.scores if class_conditional else [sorted(s for per in self.scores for s in per)] * len(self.scores)
        return np.array([quantile_threshold(pool, coverage) for pool in pools])

    def apply(self, probs: np.ndarray, coverage: float, class_conditional: bool = False) -> np.ndarray:
        """(n, C) boolean: label c is in row i's set when 1 - p_ic is at most c's threshold."""
        check_classes("label-set scores", self.scores, np.shape(probs)[1])
        return 1.0 - np.asarray(probs) <= self.thresholds(coverage, class_conditional)[None, :]

    def to_dict(self) -> dict:
        return {"kind": "lac", "scores": [rounded(per) for per in self.scores]}

    @classmethod
    def from_dict(cls, stored: dict) -> LabelSets:
        if stored.get("kind") != "lac":
            raise UserError(f"head.json's label-set kind is {stored.get('kind')!r}, not lac; install the msc version "
                            "that registered the model")
        return cls(scores=tuple(tuple(sorted(map(float, per))) for per in stored["scores"]))


@dataclass(frozen=True)
class ProbabilityRules:
    """All three, as head.json stores them under "calibration", "decision" and "label_sets"; what every entry
    point applies to the head's raw (n, C) softmax. A model registered before them has only a temperature:
    ``from_dict({}, temperature)`` gives that map, the plain argmax and no label sets."""

    calibration: CalibrationMap
    decision: DecisionRule | None = None  # None: the plain argmax
    label_sets: LabelSets | None = None  # None: coverage cannot be asked
    # The rows registration fitted all three on (msc/train/crossfit.py): "out_of_fold" (fold models' predictions
    # of train + validation) or "validation" (the head's own); None in a head.json from before it was recorded.
    fitted_on: str | None = None

    def predict(self, raw: np.ndarray, coverage: float | None = None, class_conditional: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(n, C) calibrated probabilities, (n,) label ids and, when ``coverage`` is given, (n, C) boolean sets."""
        probs = self.calibration.apply(raw)
        labels = self.decision.apply(probs) if self.decision is not None else probs.argmax(axis=1)
        if coverage is None:
            return probs, labels, None
        if self.label_sets is None:
            raise UserError("this model was registered without conformal label sets, so it cannot answer a coverage; "
                            "leave coverage out, or register it again with this msc (python -m src.tune)")
        return probs, labels, self.label_sets.apply(probs, coverage, class_conditional)

    def to_dict(self) -> dict:
        stored = {"calibration": self.calibration.to_dict()}
        if self.decision is not None:
            stored["decision"] = self.decision.to_dict()
        if self.label_sets is not None:
            stored["label_sets"] = self.label_sets.to_dict()
        if self.fitted_on is not None:
            stored["fitted_on"] = self.fitted_on
        return stored

    @classmethod
    def from_dict(cls, stored: dict, temperature: float = 1.0) -> ProbabilityRules:
        calibration = (CalibrationMap.from_dict(stored["calibration"]) if "calibration" in stored
                       else CalibrationMap(kind="temperature", temperature=temperature))
        return cls(calibration=calibration,
                   decision=DecisionRule.from_dict(stored["decision"]) if "decision" in stored else None,
                   label_sets=LabelSets.from_dict(stored["label_sets"]) if "label_sets" in stored else None,
                   fitted_on=stored.get("fitted_on"))


def quantile_threshold(sorted_scores, coverage: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) coverage)-th smallest of n sorted scores, inf past n."""
    rank = max(1, math.ceil((len(sorted_scores) + 1) * coverage - 1e-9))  # 1e-9: 0.9 * 10 is 9.000000000000002
    return float(sorted_scores[rank - 1]) if rank <= len(sorted_scores) else math.inf


def label_set_names(members: np.ndarray, names: tuple[str, ...]) -> list[str]:
    """One string per row of (n, C) boolean ``members``: its labels in class order joined by '|' ('' if empty)."""
    return ["|".join(name for name, kept in zip(names, row) if kept) for row in members]


def rounded(values):
    """Floats (nested lists or tuples of them) as JSON lists rounded to 6 decimals: head.json stays small."""
    if isinstance(values, (list, tuple, np.ndarray)):
        return [rounded(v) for v in values]
    return round(float(values), 6)
