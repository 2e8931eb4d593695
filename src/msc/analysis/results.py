"""``results/ablation.json``: what the report stage reads besides the CSVs, in one schema."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from msc.config import TrainConfig
from msc.core.handoff import HandOff, read_handoff

DETAILS = "ablation.json"


@dataclass(frozen=True)
class AblationResults(HandOff):
    """Everything the report needs and the CSVs (ablation.csv, bad_cases.csv) do not hold."""

    NAME: ClassVar[str] = "ablation-results"
    VERSION: ClassVar[int] = 3  # 2: attribution; 3: context.labels
    WHAT: ClassVar[str] = "ablation result file"
    WRITTEN_BY: ClassVar[str] = "`python -m src.ablation` (or `dvc repro ablation`)"

    context: dict  # ReportContext's fields, train as a dict
    rows: list  # one dict per ablation.csv row, unrounded
    analysed: dict  # the tuned head: variant, scores and histories per seed, calibration of the first seed
    holdout_labels: list  # (n_holdout,) class ids
    holdout_kinds: dict  # error kind -> holdout samples it applies to, right or wrong
    predictions: dict  # variant -> per seed (n_holdout,) class ids, for the paired comparisons
    mlflow_run_id: str  # the ablation's parent run, where the report adds itself
    bad_cases_sha256: str  # of the bad_cases.csv written with it: the report refuses a mix of two runs
    ablation_sha256: str  # of the ablation.csv written with it, likewise
    # What drove the analysed head's holdout predictions (msc/analysis/attribution.py): per holdout row
    # attr_text, attr_image, kind and correct; driver_margin; evidence (token heads: the most confident
    # errors' token and patch attributions) or evidence_note (why there is none).
    attribution: dict


@dataclass(frozen=True)
class ReportContext:
    """What the report must state so nobody mistakes what it was made with."""

    backbone: str
    data_root: str
    n_labelled: int
    n_train: int
    n_val: int
    n_holdout: int
    augment_views: int
    text_augment_views: int
    feature_fingerprint: str
    split_identity: str
    seeds: int
    train: TrainConfig  # the shared hyperparameters
    hyperparameter_source: str
    low_confidence: float
    low_quality_short_side: int
    git_commit: str
    labels: list  # the label set, in class order: class ids in this file index it


@dataclass(frozen=True)
class AnalysedHead:
    """The tuned configuration's head, whose errors the report analyses."""

    name: str
    scores: list[dict]  # holdout classification_metrics per seed, confusion included
    histories: list[list[dict]]  # per-epoch scalars per seed
    calibration: dict  # first seed: temperature fitted on validation, holdout ECE and reliability bins before/after
    holdout_kinds: dict[str, int]  # first seed: how many holdout samples, right or wrong, each kind applies to


def read_results(folder: Path) -> tuple[AblationResults, ReportContext, AnalysedHead]:
    """The ablation stage's result file in ``folder`` and its typed views."""
    results = read_handoff(AblationResults, folder / DETAILS)
    context = ReportContext(**{**results.context, "train": TrainConfig(**results.context["train"])})
    analysed = results.analysed
    head = AnalysedHead(analysed["variant"], analysed["scores"], analysed["histories"], analysed["calibration"],
                        results.holdout_kinds)
    return results, context, head


def csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:  # a column a row has no value for (ablation.int8_row's intervals) is empty
        writer.writerow({k: "" if row.get(k) is None else (f"{row[k]:.4f}" if isinstance(row[k], float) else row[k])
                         for k in columns})
    return out.getvalue()
