"""``results/metrics.json``'s record: the registration a tune ended with and the study that chose it.

It lives here, below both ``msc.tune``, which writes it, and ``msc.analysis``, whose ablation reads the
best trial's params from it (the two layers import nothing of each other). The file keeps the
registration's fields at its top level, as before ``Registration`` existed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from msc.core.handoff import SCHEMA_KEY, HandOff
from msc.track.promotion import Registration

REGISTRATION_KEYS = tuple(field.name for field in dataclasses.fields(Registration))


@dataclass(frozen=True)
class TuneSummary(HandOff):
    """The registered model's holdout scores and the study that chose it (a DVC metrics file too)."""

    NAME: ClassVar[str] = "tune-summary"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "tune summary"
    WRITTEN_BY: ClassVar[str] = "`python -m src.tune` (or `dvc repro tune`)"

    registration: Registration
    study_name: str
    study_identity: str
    feature_fingerprint: str
    split_identity: str
    best_trial: int
    select_metric: str  # train.select_metric, the study's objective
    best_value: float  # the best trial's objective
    best_params: dict  # the best trial's sampled values, by dotted config key

    def to_dict(self) -> dict[str, Any]:
        study = {key: value for key, value in dataclasses.asdict(self).items() if key != "registration"}
        return {SCHEMA_KEY: self.tag(), **dataclasses.asdict(self.registration), **study}

    @classmethod
    def stored_keys(cls) -> set[str]:
        return (super().stored_keys() - {"registration"}) | set(REGISTRATION_KEYS)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TuneSummary":
        study = {key: data[key] for key in super().stored_keys() - {"registration"}}
        return cls(registration=Registration(**{key: data[key] for key in REGISTRATION_KEYS}), **study)
