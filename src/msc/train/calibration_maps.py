"""Calibration maps that can undo a shift between classes, fitted by likelihood on out-of-fold rows.

One temperature (msc/train/calibration.py) rescales confidence and keeps every argmax; class-weighted
training (train.class_weight_power, class_boost) also moves probability mass towards the rare classes,
which no temperature moves back (issue 32: p_neutral averaged 0.335 for a class of 0.127). These maps add
what can:

    bcts       softmax(log p / T + b): a temperature and one bias per class (Alexandari, Kundaje and
               Shrikumar, ICML 2020); C + 1 parameters, the bias undoes a prior shift exactly
    vector     softmax(s * log p + b): one scale and one bias per class; 2C parameters
    dirichlet  softmax(W log p + b): a full (C, C) matrix (Kull et al., NeurIPS 2019), its off-diagonal
               entries held towards 0 by an L2 penalty; C^2 + C parameters

Each is fitted by minimising the mean negative log-likelihood of the labels with L-BFGS from the identity
(which the optimum is never worse than), and applied by msc.model.calibrated.CalibrationMap, which every
entry point shares. Which one registration uses: DEFAULT_MAP, vector, chosen by the study in
docs/calibration.md: bcts fixes the class shift of weighted training as well, but not a 5-label head whose
classes are over- and under-confident by different amounts (test ECE 0.118 there, vector 0.070).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from msc.model.calibrated import MAP_KINDS, CalibrationMap, ProbabilityRules, log_probs, softmax
from msc.train.calibration import fit_temperature, label_nll
from msc.train.conformal import fit_label_sets
from msc.train.decision import fit_decision_rule

DEFAULT_MAP = "vector"  # docs/calibration.md: the lowest worst-case test ECE of the maps with 2C parameters or fewer
DIRICHLET_OFF_DIAGONAL_L2 = 1e-3  # per squared off-diagonal entry, on the mean-NLL scale


def nll_and_gradient(scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of (n,) ``labels`` under softmax((n, C) ``scores``) and its (n, C) gradient."""
    n = len(labels)
    probs = softmax(scores)
    shifted = scores - scores.max(axis=1, keepdims=True)
    nll = float((np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(n), labels]).mean())
    grad = probs.copy()
    grad[np.arange(n), labels] -= 1.0
    return nll, grad / n


def fit_bcts(z: np.ndarray, labels: np.ndarray) -> CalibrationMap:
    """Temperature and (C,) bias of softmax(z / T + b), parametrised by log(1 / T) so that T stays above 0."""
    classes = z.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, bias = np.exp(theta[0]), theta[1:]
        nll, grad = nll_and_gradient(beta * z + bias, labels)
        return nll, np.concatenate([[beta * float((grad * z).sum())], grad.sum(axis=0)])

    theta = minimize(objective, np.zeros(classes + 1), jac=True, method="L-BFGS-B").x
    return CalibrationMap(kind="bcts", temperature=float(np.exp(-theta[0])), bias=centred(theta[1:]))


def fit_vector(z: np.ndarray, labels: np.ndarray) -> CalibrationMap:
    """(C,) scale and (C,) bias of softmax(s * z + b)."""
    classes = z.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        nll, grad = nll_and_gradient(theta[:classes] * z + theta[classes:], labels)
        return nll, np.concatenate([(grad * z).sum(axis=0), grad.sum(axis=0)])

    theta = minimize(objective, np.concatenate([np.ones(classes), np.zeros(classes)]), jac=True, method="L-BFGS-B").x
    return CalibrationMap(kind="vector", scale=tuple(map(float, theta[:classes])), bias=centred(theta[classes:]))


def fit_dirichlet(z: np.ndarray, labels: np.ndarray) -> CalibrationMap:
    """(C, C) matrix W and (C,) bias of softmax(z @ W.T + b), W's off-diagonal entries L2-penalised."""
    classes = z.shape[1]
    off = 1.0 - np.eye(classes)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        matrix, bias = theta[: classes * classes].reshape(classes, classes), theta[classes * classes :]
        nll, grad = nll_and_gradient(z @ matrix.T + bias, labels)
        penalty = DIRICHLET_OFF_DIAGONAL_L2 * float(((matrix * off) ** 2).sum())
        d_matrix = grad.T @ z + 2 * DIRICHLET_OFF_DIAGONAL_L2 * matrix * off  # (C, C): d/dW of s = z W^T
        return nll + penalty, np.concatenate([d_matrix.ravel(), grad.sum(axis=0)])

    start = np.concatenate([np.eye(classes).ravel(), np.zeros(classes)])
    theta = minimize(objective, start, jac=True, method="L-BFGS-B").x
    matrix = theta[: classes * classes].reshape(classes, classes)
    return CalibrationMap(kind="dirichlet", matrix=tuple(tuple(map(float, row)) for row in matrix),
                          bias=centred(theta[classes * classes :]))


def fit_map(kind: str, probs: np.ndarray, labels: np.ndarray) -> CalibrationMap:
    """The ``kind`` map (MAP_KINDS) fitted on (n, C) out-of-fold ``probs`` and their (n,) ``labels``."""
    if kind == "temperature":
        return CalibrationMap(kind="temperature", temperature=fit_temperature(probs, labels))
    fitters = {"bcts": fit_bcts, "vector": fit_vector, "dirichlet": fit_dirichlet}
    if kind not in fitters:
        raise ValueError(f"calibration map {kind!r} is not one of {', '.join(MAP_KINDS)}")
    return fitters[kind](log_probs(probs), np.asarray(labels, dtype=np.int64))


def fit_rules(probs: np.ndarray, labels: np.ndarray, select_metric: str, kind: str = DEFAULT_MAP,
              fitted_on: str | None = None, calibration: CalibrationMap | None = None) -> ProbabilityRules:
    """What registration stores in head.json, all fitted on the same (n, C) calibration ``probs`` and (n,)
    ``labels`` (``fitted_on`` names those rows): the ``kind`` map (``calibration`` when it was already fitted on
    them), then on the calibrated rows the decision weights for ``select_metric`` and the conformal scores."""
    calibration = calibration or fit_map(kind, probs, labels)
    calibrated = calibration.apply(probs)
    return ProbabilityRules(calibration=calibration, decision=fit_decision_rule(calibrated, labels, select_metric),
                            label_sets=fit_label_sets(calibrated, labels), fitted_on=fitted_on)


def row_nll(calibration: CalibrationMap, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) negative log-likelihood of each of (n,) ``labels`` under ``calibration`` applied to (n, C) ``probs``."""
    return label_nll(calibration.apply(probs), labels)


def cross_validated_nll(kind: str, probs: np.ndarray, labels: np.ndarray, seed: int, folds: int = 5) -> np.ndarray | None:
    """(n,) held-out NLL of each row under a ``kind`` map fitted on the other rows of (n, C) ``probs``: each of
    ``folds`` stratified folds is scored by the map fitted on the others. None when a class has fewer than 2
    rows, or none: a map fitted without a class pushes its probability towards 0, which these rows, having
    none of it, reward (the map would win here and never predict that class again)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels, minlength=probs.shape[1])
    folds = min(folds, int(counts.min()))
    if folds < 2:
        return None
    nll = np.zeros(len(labels))
    for fit_idx, left_idx in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(probs, labels):
        nll[left_idx] = row_nll(fit_map(kind, probs[fit_idx], labels[fit_idx]), probs[left_idx], labels[left_idx])
    return nll


def centred(bias: np.ndarray) -> tuple[float, ...]:
    """The bias less its mean: the softmax ignores a constant, so the stored one reads as a relative shift."""
    return tuple(map(float, bias - bias.mean()))
