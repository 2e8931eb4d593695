"""The sections of params.yaml that belong to the stages above the library's layers: ``tune``,
``predict``, ``register``, ``ablation`` and ``paths`` (where the stages write). The layers' own
sections live with their rules (``msc.data.config``, ``msc.model.config``, ``msc.features.config``,
``msc.train.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msc.core.settings import require
from msc.model.explain import DRIVER_MARGIN
from msc.model.usage import MAX_UNUSABLE_IMAGE_SHARE


@dataclass(frozen=True)
class TuneConfig:
    """The Optuna study of `python -m src.tune`: how many trials, where the study is stored, what it searches."""

    trials: int = 30  # the study ends holding this many finished (complete or pruned) trials
    storage: str = "sqlite:///optuna.db"  # any Optuna RDB URL; PostgreSQL for several workers
    # None: "msc-<identity>", a hash of everything that defines the experiment, so a changed config
    # gets a fresh study. A name given here or with --study-name is kept, for shared studies.
    study_name: str | None = None
    folds: int = 1  # > 1: the objective is averaged over k folds of the training split
    seed: int = 0  # seeds the TPE sampler
    n_jobs: int = 1  # trials run in parallel threads of one process
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)  # "train.<key>": spec (config/space.py)

    def __post_init__(self) -> None:
        require(self.trials >= 1, "tune.trials", self.trials, "must be at least 1")
        require(self.folds >= 1, "tune.folds", self.folds, "must be at least 1")
        require(self.n_jobs >= 1, "tune.n_jobs", self.n_jobs, "must be at least 1")
        require(self.study_name is None or bool(self.study_name.strip()), "tune.study_name", self.study_name,
                "must be a name, or null for msc-<identity>")


@dataclass(frozen=True)
class PredictConfig:
    """`python -m src.predict`: the explanation's driver rule and when too many unusable images stop it."""

    # `src.predict --explain`: a row's driver is the modality whose Shapley share of the predicted
    # log-probability exceeds the other's by more than this many nats, else "both" (msc/model/explain.py)
    driver_margin: float = DRIVER_MARGIN
    # `src.predict` stops (exit 2) when more than this share of the images the posts name could not be
    # used, rather than predict most posts from their text alone (msc/model/usage.py); 1 = never stop
    max_unusable_image_share: float = MAX_UNUSABLE_IMAGE_SHARE

    def __post_init__(self) -> None:
        require(self.driver_margin >= 0, "predict.driver_margin", self.driver_margin, "must be 0 or more (nats)")
        require(0 <= self.max_unusable_image_share <= 1, "predict.max_unusable_image_share",
                self.max_unusable_image_share, "must be a share from 0 to 1")


@dataclass(frozen=True)
class RegisterConfig:
    """Registration of the study's best model as `msc`: the backbone it carries and how its probabilities are calibrated."""

    bundle_backbone: bool = False  # copy a local backbone folder into the model instead of referencing it
    # The temperature and the probability rules (calibration map, label rule, label sets) are fitted on
    # out-of-fold predictions: the chosen configuration trained again on this many folds of train +
    # validation (msc/train/crossfit.py), which also rank the label issues; 0 fits them on the validation split alone
    calibration_folds: int = 5

    def __post_init__(self) -> None:
        require(self.calibration_folds == 0 or self.calibration_folds >= 2, "register.calibration_folds",
                self.calibration_folds, "must be 0 (fit on the validation split) or at least 2")


ZERO_SHOT_PROMPTS = {
    "positive": ["a happy photo", "a positive post", "something good"],
    "neutral": ["an ordinary photo", "a neutral post", "something plain"],
    "negative": ["a sad photo", "a negative post", "something bad"],
}


@dataclass(frozen=True)
class AblationConfig:
    """`python -m src.ablation`: the seeds of every row, the error kinds' thresholds and the zero-shot baseline's prompts."""

    seeds: int = 3  # every trained row is mean and std over train.seed, train.seed + 1, ...
    low_confidence: float = 0.5  # a misclassified sample whose top probability is below this is "low confidence"
    low_quality_short_side: int = 100  # an image whose shorter side is below this many pixels is "low quality"
    # The zero-shot baseline's prompts: label -> texts its text tower embeds (averaged per label).
    zero_shot_prompts: dict[str, list[str]] = field(default_factory=lambda: dict(ZERO_SHOT_PROMPTS))
    evidence_cases: int = 6  # token heads: the most confident errors whose tokens and patches the report attributes
    # Also the tuned head on onnxruntime int8 features of the same posts (a second cache, <features.dir>-int8):
    # what model.precision: int8 costs against this cache's fp32 features, holdout accuracy and ECE with intervals
    int8_row: bool = False

    def __post_init__(self) -> None:
        require(self.seeds >= 1, "ablation.seeds", self.seeds, "must be at least 1")
        require(0 <= self.low_confidence <= 1, "ablation.low_confidence", self.low_confidence, "must be in [0, 1]")
        require(self.evidence_cases >= 0, "ablation.evidence_cases", self.evidence_cases, "must be 0 or more")
        prompts = self.zero_shot_prompts
        require(all(isinstance(label, str) for label in prompts) and all(
            isinstance(texts, list) and texts and all(isinstance(t, str) and t.strip() for t in texts)
            for texts in prompts.values()), "ablation.zero_shot_prompts", prompts,
            "must map labels to lists of non-empty prompt texts")

    def prompts_for(self, labels: tuple[str, ...]) -> dict[str, list[str]]:
        """The zero-shot prompts of each label: ``zero_shot_prompts``' own, else two made from its name."""
        return {label: self.zero_shot_prompts.get(label) or [f"a {label} photo", f"a {label} post"] for label in labels}


@dataclass(frozen=True)
class PathsConfig:
    """Where the stages write what they report; dvc.yaml reads these (`${paths.results}/metrics.json`)."""

    results: str = "results"  # metrics.json, the plot CSVs, label_issues.csv, test_with_label.txt, ablation.csv, report.md
    logs: str = "logs"  # a crash's traceback, <command>-<time>-<pid>.log, named in its one-sentence message

    def __post_init__(self) -> None:
        for name in ("results", "logs"):
            value = getattr(self, name)
            require(bool(value.strip()), f"paths.{name}", value, "must name a folder, such as results")
