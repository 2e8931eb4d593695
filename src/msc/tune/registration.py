"""Registration in steps: the study's best model scored on the holdout, through the registry gate,
calibrated and recorded only when promoted.

1. The candidate's head is rebuilt from its ``head.json`` and weights (msc/track/logged_model.py,
   msc/train/holdout.py) and scored on the cached holdout features: no backbone is loaded, and the
   number describes exactly the artifact that gets registered.
2. The gate (msc/track/registry.py) decides from what the registry holds; where the two models are
   comparable, the Production version's head is scored the same way and the higher weighted F1 wins.
3. A promoted candidate gets its temperature from out-of-fold predictions of its configuration
   (msc/train/crossfit.py), not from the validation rows that chose it, and is recorded
   (msc/track/promotion.py).

The best trial's model is registered as trained (on the training split, early-stopped on
validation), not retrained on train+validation: a retrained model would be a different artifact from
the one tracked and selected, with no validation split left to stop it.
"""

from __future__ import annotations

import numpy as np

from msc.core.errors import UserError
from msc.features.cache import FeatureCache
from msc.features.splits import Splits
from msc.track.logged_model import logged_head
from msc.track.promotion import Registration, follow_alias, name_unfinished, record_promotion, resume_decision, unfinished_for
from msc.track.registry import MODEL_NAME, Candidate, compare, gate, rolled_back_from
from msc.train.calibration import with_temperature
from msc.train.crossfit import Refit, fitted_temperature
from msc.train.holdout import cached_head, holdout_scores, holdout_summary
from msc.train.metrics import scalar_metrics


def production_scores(current, cache: FeatureCache, rows: np.ndarray) -> tuple[dict, np.ndarray, float]:
    """The Production version's holdout scores, (n, C) calibrated probabilities and temperature, from
    its head alone; a sentence when it cannot be read."""
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
    return scores, with_temperature(raw, spec.temperature), spec.temperature


def register_if_better(candidate: Candidate, cache: FeatureCache, splits: Splits, force: bool,
                       bundle_backbone: str | None = None, refit: Refit | None = None) -> tuple[Registration, np.ndarray]:
    """Score the candidate on the holdout and let the gate decide; promote it when the gate says
    so, or when it has the higher weighted F1 than a comparable Production version.

    ``bundle_backbone`` (a local backbone folder): register a copy of the candidate with that folder
    inside. ``refit``: how to calibrate it (``fitted_temperature``). Returns the registration and the
    (n, C) holdout probabilities of whichever model is in Production afterwards, with its temperature.
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
    production = None  # (probabilities, temperature) of the Production version on the holdout, once scored
    if decision is None:
        current_scores, *production = production_scores(current, cache, rows)
        decision = compare(current, scores["weighted_f1"], current_scores["weighted_f1"], len(rows))
    if decision.promote:
        # Calibrated only when promoted (five trainings, README); a version that a killed tune registered
        # for this candidate keeps the temperature it was logged with.
        temperature = (logged_head(f"models:/{MODEL_NAME}/{left.version}")[0].temperature if left is not None
                       else fitted_temperature(head, cache, splits, refit))
        tags = {"feature_fingerprint": cache.fingerprint, "split_identity": splits.identity,
                "labels": ",".join(cache.label_names),  # the class order of its p_<label> outputs
                "backbone_identity": cache.manifest.backbone_identity}
        version = record_promotion(client, candidate, scalar_metrics(scores), tags, temperature, left,
                                   bundle_backbone).version
        probs = with_temperature(raw, temperature)
    else:  # what metrics.json reports is what is served: Production, with its own temperature
        probs, temperature = production or production_scores(current, cache, rows)[1:]
        version = current.version
    name_unfinished(client)
    return Registration(model=MODEL_NAME, version=int(version), promoted_now=decision.promote, gate=decision.reason,
                        compared_with_version=decision.compared_with, holdout_samples=int(len(rows)),
                        holdout=holdout_summary(cache.labels[rows], probs, temperature, cache.label_names),
                        candidate_holdout_weighted_f1=scores["weighted_f1"]), probs
