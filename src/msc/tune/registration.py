"""Registration in steps: the study's best model scored on the holdout, through the registry gate,
calibrated and recorded only when promoted.

1. The candidate's head is rebuilt from its ``head.json`` and weights (msc/track/logged_model.py,
   msc/train/holdout.py) and scored on the cached holdout features: no backbone is loaded, and the
   number describes exactly the artifact that gets registered.
2. The gate (msc/track/registry.py) decides from what the registry holds; where the two models are
   comparable, the Production version's head is scored the same way and the higher weighted F1 wins.
3. A promoted candidate is calibrated on out-of-fold predictions of its configuration
   (msc/train/crossfit.py), computed once, rather than on the validation rows that chose it, unless
   those fold models calibrate it clearly worse than its own validation rows do: one temperature
   (kept for comparison) and the probability rules that every entry point applies (calibration map,
   decision rule and label-set scores, msc/train/calibration_maps.py; head.json's
   ``probability_rules``, whose ``fitted_on`` names the rows); the label issues always rank the
   out-of-fold rows where there are any (msc/train/label_issues.py). It is then
   recorded (msc/track/promotion.py), the rules written into head.json before the copy is logged and
   digested, the ranking logged to its run.

The gate compares the two heads' plain argmax on the holdout (the candidate has no rules before it is
promoted); metrics.json reports the served labels and probabilities: the Production version's rules.

The best trial's model is registered as trained (on the training split, early-stopped on
validation), not retrained on train+validation: a retrained model would be a different artifact from
the one tracked and selected, with no validation split left to stop it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from msc.core.errors import UserError
from msc.features.cache import FeatureCache
from msc.features.splits import Splits
from msc.model.calibrated import ProbabilityRules
from msc.model.spec import HeadSpec
from msc.track.logged_model import logged_head
from msc.track.promotion import (
    Registration,
    follow_alias,
    log_label_issues,
    name_unfinished,
    record_promotion,
    resume_decision,
    stored_label_issues,
    unfinished_for,
)
from msc.track.registry import MODEL_NAME, Candidate, compare, gate, rolled_back_from
from msc.train.calibration import fit_temperature
from msc.train.calibration_maps import DEFAULT_MAP, fit_rules
from msc.train.crossfit import Refit, calibration_rows
from msc.train.holdout import cached_head, holdout_scores, holdout_summary
from msc.train.label_issues import COLUMNS as LABEL_ISSUE_COLUMNS
from msc.train.label_issues import rank_label_issues
from msc.train.metrics import classification_metrics, scalar_metrics


@dataclass(frozen=True)
class Registered:
    """What a registration hands the tune stage, all of the version in Production afterwards."""

    registration: Registration
    probs: np.ndarray  # (n_holdout, C) its calibrated holdout probabilities, as served
    predicted: np.ndarray  # (n_holdout,) its served labels' class ids (its decision rule)
    label_issues: str  # label_issues.csv's text: its ranking, or a header alone when none was logged with it


@dataclass(frozen=True)
class Calibration:
    """A promoted candidate's fitted calibration."""

    temperature: float  # one temperature on the same rows: head.json's temperature and the tag, for comparison
    rules: ProbabilityRules
    label_issues: str  # the ranking's CSV text


def production_scores(current, cache: FeatureCache, rows: np.ndarray) -> tuple[dict, np.ndarray, HeadSpec]:
    """The Production version's holdout scores (plain argmax), (n, C) raw probabilities and head spec,
    from its head alone; a sentence when it cannot be read."""
    uri = f"models:/{MODEL_NAME}/{current.version}"
    try:
        spec, weights = logged_head(uri)
        raw, scores = holdout_scores(cached_head(spec, weights, cache), cache, rows)
    except Exception as error:  # noqa: BLE001 - whatever broke, the gate must not silently replace it
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise UserError(
            f"cannot load the Production model {MODEL_NAME} version {current.version} ({uri}) to compare the new "
            f"candidate with it: {reason}. Repair or archive that version, or run tune again with --force to "
            "register the candidate without a comparison"
        ) from None
    return scores, raw, spec


def fitted_calibration(head, cache: FeatureCache, splits: Splits, refit: Refit | None,
                       select_metric: str) -> Calibration:
    """The temperature, the probability rules (for ``select_metric``) and the label issues of the
    candidate ``head``: the first two from the rows ``calibration_rows`` chooses, the label issues from the
    out-of-fold rows (every labelled post outside the holdout) where there are any."""
    choice = calibration_rows(head, cache, splits, refit, DEFAULT_MAP)
    rows, ranked = choice.fitted, choice.ranked
    if choice.sentence:
        print(f"registration: {choice.sentence}", file=sys.stderr)
    # As head.json will hold them (rounded to 6 decimals): metrics.json reports what is served.
    # The out-of-fold map, when those are the rows, was fitted already (to compare it with the validation rows).
    rules = ProbabilityRules.from_dict(fit_rules(rows.probs, rows.labels, select_metric, DEFAULT_MAP,
                                                 fitted_on=source_of(rows),
                                                 calibration=choice.folds_map if rows is ranked else None).to_dict())
    # Ranked under probabilities calibrated by a map fitted on the ranked rows themselves: class-weighted
    # training's shift towards rare classes would otherwise count as evidence against every label of a common class.
    ranking_map = rules.calibration if ranked is rows else choice.folds_map
    issues = rank_label_issues([cache.guids[r] for r in ranked.rows], ranked.labels, ranking_map.apply(ranked.probs),
                               cache.label_names)
    if not ranked.out_of_fold:
        print(f"warning: the label issues rank the {len(ranked.rows)} validation rows alone, with the candidate's own "
              "probabilities (no out-of-fold rows: register.calibration_folds is 0, or a class is too rare)",
              file=sys.stderr)
    return Calibration(fit_temperature(rows.probs, rows.labels), rules, issues.to_csv(index=False))


def source_of(rows) -> str:
    """head.json's probability_rules.fitted_on: which rows the rules were fitted on."""
    return "out_of_fold" if rows.out_of_fold else "validation"


def no_label_issues(version) -> str:
    """label_issues.csv for a Production version that has none logged: the header alone, said on stderr."""
    print(f"warning: {MODEL_NAME} version {version} has no label issues logged with it (registered before they "
          "were ranked); label_issues.csv holds its header alone until a model is promoted", file=sys.stderr)
    return ",".join(LABEL_ISSUE_COLUMNS) + "\n"


def promote_candidate(client, candidate: Candidate, head, raw: np.ndarray, cache: FeatureCache, splits: Splits, left,
                      refit: Refit | None, select_metric: str, bundle_backbone: str | None) -> tuple[int, Calibration]:
    """Calibrate the promoted candidate (only when promoted: five trainings, README) and record it with the
    holdout scores of what it serves (its rules' labels of the (n, C) ``raw`` holdout probabilities, as
    metrics.json reports them); a version that a killed tune registered for it (``left``) keeps the
    calibration it was logged with. Returns the version and the calibration."""
    if left is not None:
        spec = logged_head(f"models:/{MODEL_NAME}/{left.version}")[0]
        issues = stored_label_issues(candidate.run_id) or no_label_issues(left.version)
        calibration = Calibration(spec.temperature, spec.rules(), issues)
    else:
        calibration = fitted_calibration(head, cache, splits, refit, select_metric)
        log_label_issues(client, candidate.run_id, calibration.label_issues)  # beside the registered copy
    tags = {"feature_fingerprint": cache.fingerprint, "split_identity": splits.identity,
            "labels": ",".join(cache.label_names),  # the class order of its p_<label> outputs
            "backbone_identity": cache.manifest.backbone_identity, "calibration": calibration.rules.calibration.kind,
            "calibration_rows": calibration.rules.fitted_on or "unrecorded"}
    served = classification_metrics(cache.labels[splits.holdout], calibration.rules.predict(raw)[1], cache.label_names)
    version = record_promotion(client, candidate, scalar_metrics(served), tags, calibration.temperature,
                               calibration.rules.to_dict(), left, bundle_backbone).version
    return int(version), calibration


def register_if_better(candidate: Candidate, cache: FeatureCache, splits: Splits, force: bool,
                       bundle_backbone: str | None = None, refit: Refit | None = None, *,
                       select_metric: str) -> Registered:
    """Score the candidate on the holdout and let the gate decide; promote it when the gate says
    so, or when it has the higher weighted F1 than a comparable Production version.

    ``bundle_backbone`` (a local backbone folder): register a copy of the candidate with that folder
    inside. ``refit``: how to train it again for its calibration rows (``calibration_rows``);
    ``select_metric``: what its decision rule maximises. Returns the registration and the holdout
    predictions and label issues of whichever model is in Production afterwards, with its rules.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    rows = splits.holdout
    head = cached_head(*logged_head(candidate.model_uri), cache)
    raw, scores = holdout_scores(head, cache, rows)
    current = follow_alias(client)
    left = unfinished_for(client, candidate.run_id)
    decision = resume_decision(left) or gate(current, candidate, cache.fingerprint, splits.identity, force,
                                             rolled_back_from(client, current))
    production = None  # (raw holdout probabilities, head spec) of the Production version, once scored
    if decision is None:
        current_scores, *production = production_scores(current, cache, rows)
        decision = compare(current, scores["weighted_f1"], current_scores["weighted_f1"], len(rows))
    if decision.promote:
        version, calibration = promote_candidate(client, candidate, head, raw, cache, splits, left, refit,
                                                 select_metric, bundle_backbone)
    else:  # what metrics.json reports is what is served: Production, with its own rules
        raw, spec = production or production_scores(current, cache, rows)[1:]
        version = int(current.version)
        calibration = Calibration(spec.temperature, spec.rules(),
                                  stored_label_issues(current.run_id) or no_label_issues(current.version))
    name_unfinished(client)
    probs, predicted, _ = calibration.rules.predict(raw)
    registration = Registration(
        model=MODEL_NAME, version=version, promoted_now=decision.promote, gate=decision.reason,
        compared_with_version=decision.compared_with, holdout_samples=int(len(rows)),
        holdout=holdout_summary(cache.labels[rows], raw, calibration.rules, calibration.temperature, cache.label_names),
        candidate_holdout_weighted_f1=scores["weighted_f1"])
    return Registered(registration, probs, predicted, calibration.label_issues)
