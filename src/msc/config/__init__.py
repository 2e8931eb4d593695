"""The one typed config: params.yaml read into frozen dataclasses, strictly, and composed here.

Each layer owns its section and checks it where its rules live: ``data`` in ``msc.data.config``,
``model`` in ``msc.model.config``, ``features`` in ``msc.features.config``, ``train`` in
``msc.train.config``; the stage sections (``tune``, ``predict``, ``register``, ``ablation``, ``paths``)
are in ``msc.config.sections``. This module composes them (``Config``), loads the file, applies dotted
overrides and flattens the result for MLflow. Field names are the keyword arguments of the code they
feed, so a value reaches its use in one hop. Lower layers take their own sections, never ``Config``.

The loader is the project's own (``msc.core.settings``), not pydantic: its messages are one sentence
naming the file and the dotted key (``params.yaml: key 'train.lr' must be of type float, got '1e-3x'``),
while pydantic v2's are multi-line reports ("1 validation error for TrainConfig / lr / Input should be
a valid number ...") without the file or the section, and would need a translation layer as long as
the loader. The sections stay plain frozen dataclasses, which ``dataclasses.replace`` and ``asdict``
already serve everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from msc.config.sections import AblationConfig, PathsConfig, PredictConfig, RegisterConfig, TuneConfig
from msc.config.space import check_search_space, flat_search_space
from msc.core.errors import UserError
from msc.core.settings import build, require
from msc.core.yamlfile import load_yaml
from msc.data.config import DataConfig
from msc.features.config import FeaturesConfig
from msc.model.config import ModelConfig
from msc.train.config import TrainConfig

PARAMS_FILE = "params.yaml"

__all__ = ["AblationConfig", "Config", "DataConfig", "FeaturesConfig", "ModelConfig", "PathsConfig", "PredictConfig",
           "RegisterConfig", "TrainConfig", "TuneConfig", "flatten", "load_config", "with_overrides"]


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
    paths: PathsConfig = field(default_factory=PathsConfig)

    def __post_init__(self) -> None:
        # Also checks each bound of a tuned train.top_layers: check_search_space builds a Config per bound.
        require(self.train.top_layers <= self.features.top_layers, "train.top_layers", self.train.top_layers,
                f"must be at most features.top_layers ({self.features.top_layers}), the blocks whose input states "
                "featurize caches; raise features.top_layers and run `python -m src.featurize`")


def with_overrides(config: Config, overrides: dict[str, Any], source: str = "override") -> Config:
    """Return ``config`` with dotted keys replaced, e.g. {"train.lr": 0.01}; types are checked, and a value
    that breaks a rule is a sentence that starts with ``source`` (what set it: a command's flag, say)."""
    sections = {f.name: dataclasses.asdict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in sections or name not in sections[section]:
            raise UserError(f"unknown config key '{key}'")
        sections[section][name] = value
    return build(Config, sections, source)


def read_params(path: Path) -> dict:
    """params.yaml's mapping; a sentence for a missing, empty, non-UTF-8 or invalid file."""
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
    return values


def load_config(path: str | os.PathLike = PARAMS_FILE) -> Config:
    """Read params.yaml into a Config. A missing file is an error, never silently the defaults."""
    path = Path(path)
    values = read_params(path)
    tune = values.get("tune") if isinstance(values, dict) else None
    if isinstance(tune, dict) and "search_space" in tune:
        values["tune"] = {**tune, "search_space": flat_search_space(tune["search_space"], str(path))}
    config = build(Config, values, str(path))
    check_search_space(config.tune.search_space, {f.name for f in dataclasses.fields(TrainConfig)}, str(path),
                       lambda key, value: with_overrides(config, {key: value}))
    return config


def flatten(config: Config) -> dict[str, Any]:
    """Every parameter as ``section.key`` -> value, the names MLflow runs are logged under; ``paths``
    says where outputs go, not what a run computes, and is left out."""
    flat = {}
    for section in dataclasses.fields(config):
        if section.name == "paths":
            continue
        for name, value in dataclasses.asdict(getattr(config, section.name)).items():
            if name != "search_space":
                flat[f"{section.name}.{name}"] = value
    return flat
