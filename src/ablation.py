"""Stage ``ablation``: every head over several seeds on the untouched holdout and an error analysis
(msc/analysis/ablation.py), into ``paths.results``; ``python -m src.report`` turns its outputs into ``report.md``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from msc.core.errors import cli


def print_table(rows: list[dict], title: str, console: Console) -> None:
    table = Table(title=title)
    for column in ("variant", "seeds", "accuracy", "weighted F1", "macro F1", "params"):
        table.add_column(column, justify="left" if column == "variant" else "right")

    def spread(row: dict, metric: str) -> str:
        std = row[f"{metric}_std"]
        return f"{row[metric]:.4f}" + ("" if std is None else f" ± {std:.4f}")

    for row in rows:
        table.add_row(row["variant"], str(row["seeds"]), spread(row, "accuracy"), spread(row, "weighted_f1"),
                      spread(row, "macro_f1"),
                      "" if row["trainable_params"] is None else f"{row['trainable_params']:,}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ablation, fusion comparison and error analysis on the holdout.")
    parser.add_argument("--params", default="params.yaml", help="the configuration file (default: %(default)s)")
    parser.add_argument("--metrics", type=Path, help="the tune stage's summary, for the tuned hyperparameters "
                        "(default: <paths.results>/metrics.json)")
    parser.add_argument("--out-dir", type=Path, help="where the CSVs and ablation.json go (default: paths.results)")
    parser.add_argument("--force", action="store_true", help="replace ablation.csv, bad_cases.csv and "
                        "ablation.json in --out-dir even when the ablation did not write them")
    args = parser.parse_args(argv)
    # The library (torch, sklearn, mlflow) is imported after the arguments: --help answers at once.
    from msc.analysis.ablation import run_ablation
    from msc.analysis.precision_row import int8_cache, int8_folder
    from msc.analysis.results import DETAILS, AblationResults
    from msc.config import load_config
    from msc.core.errors import log_crashes_in, step
    from msc.core.files import check_output_folder
    from msc.core.owned import holds_handoff, refuse_foreign
    from msc.features.cache import open_cache
    from msc.features.manifest import MANIFEST, CacheManifest

    config = load_config(args.params)
    log_crashes_in(config.paths.logs)
    results = Path(config.paths.results)
    metrics, out_dir = args.metrics or results / "metrics.json", args.out_dir or results
    check_output_folder(out_dir, "--out-dir")
    ours = args.force or holds_handoff(out_dir / DETAILS, AblationResults.NAME)
    targets = [("--out-dir", out_dir / name, ours) for name in ("ablation.csv", "bad_cases.csv", DETAILS)]
    twin = int8_folder(config.features.dir)  # ablation.int8_row builds (and rebuilds) a cache there
    if config.ablation.int8_row:
        targets.append(("the int8 cache of ablation.int8_row", twin,
                        args.force or holds_handoff(twin / MANIFEST, CacheManifest.NAME)))
    refuse_foreign(targets, "ablation", "--force")
    cache = open_cache(config.data, config.model, config.features, config.train.device)
    cache.require_token_states("the ablation, which trains every head (early and cross_attention too),")
    console = Console()
    int8 = None
    if config.ablation.int8_row:
        with step(f"computing the int8 features of ablation.int8_row in {twin}"):
            int8 = int8_cache(config, cache)
    with step("training and scoring the ablation variants"):
        rows = run_ablation(config, cache, metrics, out_dir, int8)
    print_table(rows, f"holdout, mean ± std over seeds ({cache.manifest.backbone}, {config.data.root})", console)
    print(f"wrote {out_dir / 'ablation.csv'}, {out_dir / 'bad_cases.csv'} and {out_dir / DETAILS}; "
          "`python -m src.report` writes the report")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
