"""The one typed config: params.yaml read into frozen dataclasses, strictly.

Every section of params.yaml maps to one dataclass below; an unknown key or a value of the
wrong type stops the run with a message naming the key. Field names are the keyword arguments
of the code they feed (``build_head(fusion=..., hidden_dim=..., dropout=...)``), so a value
reaches its use in one hop. The module is long because every section of params.yaml lives here, in
one place, with its checks.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from msc.config.space import as_float, check_search_space, flat_search_space
from msc.core.errors import UserError
from msc.core.labels import check_label_set
from msc.core.yamlfile import load_yaml
from msc.data.posts import DataSource
from msc.data.split import SplitRule
from msc.data.table import TABLE_COLUMNS, TABLE_FORMATS
from msc.model.explain import DRIVER_MARGIN
from msc.model.heads import ATTENTION_HEADS, HEADS
from msc.model.usage import MAX_UNUSABLE_IMAGE_SHARE

PARAMS_FILE = "params.yaml"


def require(condition: bool, key: str, value: Any, rule: str) -> None:
    """Raise a UserError naming ``key`` unless ``condition``; the dataclasses' range checks."""
    if not condition:
        raise UserError(f"key '{key}' is {value!r}; it {rule}")


@dataclass(frozen=True)
class DataConfig:
    root: str = "data"  # course layout: train.txt, test_without_label.txt, data/{guid}.txt|jpg
    holdout_fraction: float = 0.15  # untouched split of train.txt; the only one reported
    val_fraction: float = 0.15  # split of train.txt for early stopping and tuning
    split_seed: int = 42  # seeds the stratified holdout and validation splits
    on_error: Literal["error", "skip"] = "error"  # a missing or undecodable file: stop, or drop the labelled sample
    splits_dir: str = "splits"  # the split stage's output: splits.csv (guid -> train/val/holdout) and split.json
    text_encoding: str = "auto"  # auto: UTF-8, else GB18030 (the course archive), else cp1252; or one codec
    format: Literal["mvsa", "table"] = "mvsa"  # the course layout, or one table of posts (msc/data/table.py)
    table: str | None = None  # format table: the .csv, .jsonl or .parquet file, relative to root
    columns: dict[str, str] = field(default_factory=dict)  # format table: our column name -> the table's
    labels: list[str] | None = None  # the ordered label set; null: the course's (mvsa) or the table's, sorted

    def __post_init__(self) -> None:
        if self.labels is not None:
            check_label_set(self.labels, "key 'data.labels'")
        unknown = sorted(set(self.columns) - set(TABLE_COLUMNS))
        require(not unknown and all(isinstance(v, str) and v.strip() for v in self.columns.values()), "data.columns",
                self.columns, f"must map some of {', '.join(TABLE_COLUMNS)} to the table's column names")
        theirs = list(self.columns.values())
        require(len(set(theirs)) == len(theirs), "data.columns", self.columns,
                "maps two of our columns to one of yours; map each to its own column")
        require(self.format == "mvsa" or bool(self.table and self.table.lower().endswith(TABLE_FORMATS)), "data.table",
                self.table, f"must name the table of posts ({', '.join(TABLE_FORMATS)}, relative to data.root) when "
                "data.format is table")
        if self.text_encoding != "auto":
            try:
                codecs.lookup(self.text_encoding)
            except LookupError:
                require(False, "data.text_encoding", self.text_encoding, "must be auto or a Python codec name "
                        "such as utf-8, gb18030 or latin-1")
        for name in ("holdout_fraction", "val_fraction"):
            value = getattr(self, name)
            require(0 < value < 1, f"data.{name}", value, "must be between 0 and 1")
        total = self.holdout_fraction + self.val_fraction
        require(total < 1, "data.holdout_fraction + data.val_fraction", total, "must be below 1, to leave a training split")

    @property
    def split_rule(self) -> SplitRule:
        return SplitRule(self.holdout_fraction, self.val_fraction, self.split_seed)

    @property
    def source(self) -> DataSource:
        return DataSource(Path(self.root), self.format, self.table, dict(self.columns),
                          None if self.labels is None else tuple(self.labels))


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "openai/clip-vit-base-patch32"  # hub id or local folder
    revision: str = "main"  # hub revision; ignored for a local folder
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto: fp16 on GPU, fp32 on CPU
    family: str | None = None  # None: the checkpoint's config.json model_type says it; else clip | siglip

    def __post_init__(self) -> None:
        from msc.model.backbone import BACKBONE_FAMILIES

        require(self.family is None or self.family in BACKBONE_FAMILIES, "model.family", self.family,
                f"must be null (read from the checkpoint's config.json) or one of {', '.join(BACKBONE_FAMILIES)}")


@dataclass(frozen=True)
class FeaturesConfig:
    dir: str = "features"  # the cache folder (a DVC output)
    augment_views: int = 4  # augmented views cached per labelled image; 0 = none
    batch_size: int = 64  # backbone batch size
    num_workers: int = 2  # DataLoader processes that read and decode images
    max_text_tokens: int = 77  # CLIP's context length; longer tweets are truncated
    seed: int = 0  # seeds the augmentations, so a rebuild gives the same cache
    text_augment_views: int = 0  # augmented texts cached per labelled tweet (word dropout, swaps, tags); 0 = none
    top_layers: int = 0  # K: also cache the hidden states entering each tower's last K blocks (train.top_layers)

    def __post_init__(self) -> None:
        require(self.top_layers >= 0, "features.top_layers", self.top_layers, "must be 0 or more")
        require(self.augment_views >= 0, "features.augment_views", self.augment_views, "must be 0 or more")
        require(self.text_augment_views >= 0, "features.text_augment_views", self.text_augment_views,
                "must be 0 or more")
        require(self.batch_size >= 1, "features.batch_size", self.batch_size, "must be at least 1")
        require(self.num_workers >= 0, "features.num_workers", self.num_workers, "must be 0 or more")
        require(self.max_text_tokens >= 2, "features.max_text_tokens", self.max_text_tokens,
                "must be at least 2 (start and end token)")


@dataclass(frozen=True)
class TrainConfig:
    fusion: str = "late"  # a head registered in msc/model/heads.py (HEADS): text, image, early, late, ...
    hidden_dim: int = 256  # width of the fusion layers and the classifier
    dropout: float = 0.2
    lr: float = 0.001  # AdamW peak learning rate, cosine-decayed to 0
    weight_decay: float = 0.01
    epochs: int = 10
    batch_size: int = 64
    patience: int = 3  # epochs without a better select_metric before stopping
    class_weight_power: float = 0.0  # loss weight = (inverse class frequency) ** power
    class_boost: dict[str, float] = field(default_factory=dict)  # label -> extra factor on its class weight
    neutral_boost: float = 1.0  # the course's key: class_boost's factor of the label "neutral"
    modality_dropout: float = 0.1  # share of training samples that lose their text or their image
    use_augmented_views: bool = True  # sample one of the cache's K augmented views per image and epoch
    use_text_views: bool = True  # likewise for the cache's augmented texts (features.text_augment_views)
    # Training autocast. auto: on a GPU bf16 where supported, else fp16 with a gradient scaler; on a
    # CPU bf16 for the token heads where it is native. Prediction always runs in fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"  # where heads train and the cache lives: auto (cuda when present) | cpu | cuda | cuda:N
    # The one selection metric: early stopping, the kept epoch and the study's objective.
    select_metric: Literal["val_weighted_f1", "val_macro_f1", "val_accuracy", "val_macro_recall",
                           "val_macro_precision"] = "val_weighted_f1"
    seed: int = 0
    # k <= features.top_layers: train copies of each tower's last k blocks with the head (msc/model/top_layers.py);
    # 0 = the frozen backbone. Their learning rate is lr * top_layers_lr_scale; the adapter is full
    # (every weight of the blocks, their final norm and projection) or lora (peft adapters of rank lora_rank).
    top_layers: int = 0
    top_layers_lr_scale: float = 0.1
    top_layers_adapter: Literal["full", "lora"] = "full"
    lora_rank: int = 8

    def __post_init__(self) -> None:
        require(self.top_layers >= 0, "train.top_layers", self.top_layers, "must be 0 or more")
        require(self.top_layers_lr_scale > 0, "train.top_layers_lr_scale", self.top_layers_lr_scale, "must be above 0")
        require(self.lora_rank >= 1, "train.lora_rank", self.lora_rank, "must be at least 1")
        require(self.fusion in HEADS, "train.fusion", self.fusion, f"must be one of {', '.join(HEADS)}")
        require(self.hidden_dim >= ATTENTION_HEADS and self.hidden_dim % ATTENTION_HEADS == 0, "train.hidden_dim",
                self.hidden_dim, f"must be a positive multiple of {ATTENTION_HEADS}, the attention heads of the token heads")
        require(0 <= self.dropout < 1, "train.dropout", self.dropout, "must be in [0, 1)")
        require(self.lr > 0, "train.lr", self.lr, "must be above 0")
        require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must be 0 or more")
        require(self.epochs >= 1, "train.epochs", self.epochs, "must be at least 1")
        require(self.batch_size >= 1, "train.batch_size", self.batch_size, "must be at least 1")
        require(self.patience >= 1, "train.patience", self.patience, "must be at least 1")
        require(self.class_weight_power >= 0, "train.class_weight_power", self.class_weight_power, "must be 0 or more")
        require(self.neutral_boost > 0, "train.neutral_boost", self.neutral_boost, "must be above 0")
        require(all(isinstance(label, str) and isinstance(factor, (int, float)) and not isinstance(factor, bool)
                    and factor > 0 for label, factor in self.class_boost.items()), "train.class_boost",
                self.class_boost, "must map labels to factors above 0 (quote a label YAML reads as a boolean: 'yes')")
        require(self.neutral_boost == 1 or "neutral" not in self.class_boost, "train.neutral_boost", self.neutral_boost,
                "and train.class_boost's neutral both set the neutral factor; keep one")
        require(0 <= self.modality_dropout < 1, "train.modality_dropout", self.modality_dropout, "must be in [0, 1)")
        require(self.device in ("auto", "cpu", "cuda") or self.device.removeprefix("cuda:").isdigit(), "train.device",
                self.device, "must be auto, cpu, cuda or cuda:N")

    def class_factors(self, labels: tuple[str, ...]) -> list[float]:
        """Each class's extra loss-weight factor, in class order: ``class_boost``'s, and ``neutral_boost``
        for a label "neutral"; a UserError for a factor of a label the data does not have."""
        boost = {**self.class_boost, **({"neutral": self.neutral_boost} if self.neutral_boost != 1 else {})}
        unknown = sorted(set(boost) - set(labels))
        if unknown:
            key = "train.class_boost" if unknown[0] in self.class_boost else "train.neutral_boost"
            raise UserError(f"key '{key}' sets a factor for label {unknown[0]!r}, which the data does not have (its "
                            f"labels: {', '.join(labels)}); remove it, or use one of those labels")
        return [float(boost.get(label, 1.0)) for label in labels]


@dataclass(frozen=True)
class TuneConfig:
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
    bundle_backbone: bool = False  # copy a local backbone folder into the model instead of referencing it
    # The temperature is fitted on out-of-fold predictions: the chosen configuration trained again on this
    # many folds of train + validation (msc/train/crossfit.py); 0 fits it on the validation split alone
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
    seeds: int = 3  # every trained row is mean and std over train.seed, train.seed + 1, ...
    low_confidence: float = 0.5  # a misclassified sample whose top probability is below this is "low confidence"
    low_quality_short_side: int = 100  # an image whose shorter side is below this many pixels is "low quality"
    # The zero-shot baseline's prompts: label -> texts its text tower embeds (averaged per label).
    zero_shot_prompts: dict[str, list[str]] = field(default_factory=lambda: dict(ZERO_SHOT_PROMPTS))
    evidence_cases: int = 6  # token heads: the most confident errors whose tokens and patches the report attributes

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
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)

    def __post_init__(self) -> None:
        # Also checks each bound of a tuned train.top_layers: check_search_space builds a Config per bound.
        require(self.train.top_layers <= self.features.top_layers, "train.top_layers", self.train.top_layers,
                f"must be at most features.top_layers ({self.features.top_layers}), the blocks whose input states "
                "featurize caches; raise features.top_layers and run `python -m src.featurize`")


def for_labels(config: Config, labels: tuple[str, ...]) -> tuple[Config, str | None]:
    """``config`` for data of the label set ``labels``, checked before any trial, and a warning or None.

    A set factor of a label the data lacks is a UserError. A tuned train.neutral_boost (the committed
    search space's, made for the course's labels) is left out of the study of data without a "neutral"
    label, where it would change nothing but the sampler's work; the warning says so.
    """
    config.train.class_factors(labels)
    space = config.tune.search_space
    if "train.neutral_boost" not in space or "neutral" in labels:
        return config, None
    kept = {key: spec for key, spec in space.items() if key != "train.neutral_boost"}
    warning = (f"the data's labels ({', '.join(labels)}) have no 'neutral', so the study leaves out "
               "tune.search_space's train.neutral_boost; set train.class_boost to weight a label")
    return dataclasses.replace(config, tune=dataclasses.replace(config.tune, search_space=kept)), warning


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` coerced to ``annotation`` (int -> float only), or raise UserError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):  # ``X | None``
        if value is None:
            return None
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _check_type(value, annotation, where)
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise UserError(f"{where} is {value!r}; it must be one of {', '.join(map(str, allowed))}")
        return value
    if origin in (dict, list):
        if not isinstance(value, origin):
            raise UserError(f"{where} must be a {origin.__name__}, got {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float:
        value = as_float(value)  # 1e-05 (what dvc exp run -S writes) is a string to YAML 1.1
    if annotation is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where} is {value!r}; it must be a finite number")
    if (annotation in (int, float) and isinstance(value, bool)) or not isinstance(value, annotation):
        raise UserError(f"{where} must be of type {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, values: Any, source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``values``, naming any unknown or mistyped key.

    ``source`` names the file for messages; ``prefix`` is the dotted path of ``cls`` in it.
    """
    if not isinstance(values, dict):
        raise UserError(f"{source}: '{prefix.rstrip('.') or 'the file'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"{source}: unknown key '{prefix}{unknown[0]}'; the keys there are: "
            + ", ".join(f"{prefix}{k}" for k in sorted(known))
        )
    kwargs = {}
    for name, value in values.items():
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value or {}, source, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(value, hints[name], f"{source}: key '{prefix}{name}'")
    try:
        return cls(**kwargs)
    except UserError as error:  # a range check in __post_init__
        raise UserError(f"{source}: {error}") from None


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Return ``config`` with dotted keys replaced, e.g. {"train.lr": 0.01}; types are checked."""
    sections = {f.name: dataclasses.asdict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in sections or name not in sections[section]:
            raise UserError(f"unknown config key '{key}'")
        sections[section][name] = value
    return _build(Config, sections, "override")


def load_config(path: str | os.PathLike = PARAMS_FILE) -> Config:
    """Read params.yaml into a Config. A missing file is an error, never silently the defaults."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no params file '{path}' (in {Path.cwd()}): run from the repository root, where "
                        "params.yaml is, or name one with --params FILE")
    try:
        values = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text (byte {error.start} is 0x{error.object[error.start]:02x}); save it "
                        "as UTF-8, or restore it with `git checkout -- params.yaml`") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML: {error}") from None
    if values is None:  # an empty file would run everything on the built-in defaults, silently
        raise UserError(f"{path} is empty; it needs the pipeline's sections (data, model, features, train, ...): name "
                        "another one with --params FILE (the repository's: `git checkout -- params.yaml`)")
    tune = values.get("tune") if isinstance(values, dict) else None
    if isinstance(tune, dict) and "search_space" in tune:
        values["tune"] = {**tune, "search_space": flat_search_space(tune["search_space"], str(path))}
    config = _build(Config, values, str(path))
    check_search_space(config.tune.search_space, {f.name for f in dataclasses.fields(TrainConfig)}, str(path),
                       lambda key, value: with_overrides(config, {key: value}))
    return config


def flatten(config: Config) -> dict[str, Any]:
    """Every parameter as ``section.key`` -> value, the names MLflow runs are logged under."""
    flat = {}
    for section in dataclasses.fields(config):
        for name, value in dataclasses.asdict(getattr(config, section.name)).items():
            if name != "search_space":
                flat[f"{section.name}.{name}"] = value
    return flat

