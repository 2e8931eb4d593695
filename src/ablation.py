"""Stage ``ablation``: every head, and a logistic-regression probe, scored on the holdout.

Each head trains with params.yaml's ``train`` settings (only ``fusion`` changes), on the
training split, selected on validation, and is scored once on the untouched holdout. The
linear probe on the same cached pooled features is the standard CLIP baseline; its C is
chosen on validation too. On the synthetic sample, the Bayes-optimal rule's accuracy on the
same holdout rows is the ceiling.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from src import LABELS
from src.config import FUSIONS, Config, load_config
from src.data import Splits, make_splits
from src.errors import cli
from src.features import FeatureCache
from src.io import atomic_write_text
from src.metrics import classification_metrics
from src.train import predict_proba, train_head

PROBE_C = (0.01, 0.1, 1.0, 10.0, 100.0)
COLUMNS = ("variant", "accuracy", "weighted_f1", "macro_f1")


def probe_features(cache: FeatureCache, rows: np.ndarray) -> np.ndarray:
    """(n, 2P): concatenated L2-normalised pooled text and image embeddings, clean views."""
    batch = cache.batch(rows)
    return np.concatenate([normalize(batch.text_pooled.numpy()), normalize(batch.image_pooled.numpy())], axis=1)


def linear_probe(cache: FeatureCache, splits: Splits) -> dict:
    """Logistic regression on pooled features, C by validation weighted F1; holdout scores."""
    x_train, x_val, x_holdout = (probe_features(cache, rows) for rows in (splits.train, splits.val, splits.holdout))
    y_train, y_val = cache.labels[splits.train], cache.labels[splits.val]
    best = max(
        (LogisticRegression(C=c, max_iter=5000).fit(x_train, y_train) for c in PROBE_C),
        key=lambda model: classification_metrics(y_val, model.predict(x_val))["weighted_f1"],
    )
    return classification_metrics(cache.labels[splits.holdout], best.predict(x_holdout))


def bayes_rows(data_root: Path, cache: FeatureCache, rows: np.ndarray) -> list[dict] | None:
    """On the synthetic sample, the Bayes rule's holdout scores with text, image and both cues."""
    cues_path = data_root / "cues.csv"
    if not cues_path.is_file():
        return None
    from src.sample import bayes_predict

    cues = {row["guid"]: row for row in csv.DictReader(cues_path.open())}
    guids = [cache.guids[i] for i in rows]
    out = []
    for variant, use_text, use_image in (("bayes:text", True, False), ("bayes:image", False, True), ("bayes:both", True, True)):
        predictions = [
            LABELS.index(bayes_predict(cues[g]["text_cue"] if use_text else None, cues[g]["image_cue"] if use_image else None))
            for g in guids
        ]
        out.append({"variant": variant, **classification_metrics(cache.labels[rows], np.array(predictions))})
    return out


def run_ablation(config: Config, cache: FeatureCache) -> list[dict]:
    """One row per variant: every fusion head, the linear probe and (sample only) the Bayes rule."""
    splits = make_splits(cache.manifest["labels"], config.data.holdout_fraction, config.data.val_fraction,
                         config.data.split_seed)
    rows = []
    for fusion in FUSIONS:
        result = train_head(cache, splits.train, splits.val, replace(config.train, fusion=fusion))
        probs = predict_proba(result.head, cache, splits.holdout)
        rows.append({"variant": fusion, **classification_metrics(cache.labels[splits.holdout], probs.argmax(1))})
    rows.append({"variant": "logistic_probe", **linear_probe(cache, splits)})
    rows.extend(bayes_rows(Path(config.data.root), cache, splits.holdout) or [])
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    lines = [",".join(COLUMNS)] + [
        ",".join([row["variant"]] + [f"{row[c]:.4f}" for c in COLUMNS[1:]]) for row in rows
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("results/ablation.csv"))
    args = parser.parse_args(argv)
    config = load_config(args.params)
    cache = FeatureCache(config.features.dir)
    rows = run_ablation(config, cache)
    write_csv(rows, args.out)
    table = Table(title=f"holdout scores ({cache.manifest['backbone']}, {config.data.root})")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(row["variant"], *(f"{row[c]:.4f}" for c in COLUMNS[1:]))
    Console().print(table)
    bayes_file = Path(config.data.root) / "bayes.json"
    if bayes_file.is_file():
        expected = json.loads(bayes_file.read_text())["bayes_accuracy"]
        print("expected Bayes accuracy over the generating distribution: "
              + ", ".join(f"{k} {v:.4f}" for k, v in expected.items()))
    print(f"wrote {args.out}")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
