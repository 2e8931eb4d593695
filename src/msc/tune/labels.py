"""The study's rule for data of another label set than the course's."""

from __future__ import annotations

import dataclasses

from msc.config import Config


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
