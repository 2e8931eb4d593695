"""Stage ``split``: every guid of train.txt to train, validation or holdout (msc/data/split.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from msc.core.errors import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Assign every labelled guid to train, validation or holdout.")
    parser.add_argument("--params", default="params.yaml", help="the configuration file (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace splits.csv and split.json in data.splits_dir "
                        "even when the split stage did not write them")
    args = parser.parse_args(argv)
    # The library (torch, sklearn) is imported after the arguments: --help answers at once.
    from msc.config import load_config
    from msc.core.errors import log_crashes_in
    from msc.core.files import check_output_folder
    from msc.data.split import SPLIT_NAMES, SPLITS_FILE, write_splits

    config = load_config(args.params)
    log_crashes_in(config.paths.logs)
    data = config.data
    check_output_folder(data.splits_dir, "data.splits_dir")
    info = write_splits(data.source, data.splits_dir, data.split_rule, args.force)
    counts = ", ".join(f"{info.counts[name]} {name}" for name in SPLIT_NAMES)
    print(f"split {info.identity}: {counts}; wrote {Path(data.splits_dir) / SPLITS_FILE}")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
