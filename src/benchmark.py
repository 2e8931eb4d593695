"""Benchmarks: featurization, one tuning trial, the 30-trial study, prediction and peak memory,
each measured against its reference on this machine, in one run.

    python -m src.sample --no-data --backbone-shape vit-b-32 --backbone-out models/vit-b-32-random
    python -m src.benchmark --data-root ../shared/mvsa --backbone models/vit-b-32-random

Sections (``--only`` picks some; each writes ``<work-dir>/<section>.json``):

- ``featurize``: ``src.featurize`` on every sample of the data folder (the listed ones plus the
  files no label file lists, added as unlabelled test rows), against the backbone's raw forward
  throughput on the same length-sorted text batches and image batches (inputs prepared before the
  timer starts). Peak resident memory of the featurize process tree (DataLoader workers
  included; PSS) on a quarter of the samples and on all of them: bounded means the two are close.
- ``trial``: one 10-epoch trial (``late`` and ``early``) on cached features, against the same
  trial re-encoding every training and validation sample through the frozen backbone each epoch.
  The re-encoding cost per sample is measured on real files through the prediction path and
  multiplied out (10 epochs x train+validation samples); it is an extrapolation from a measured
  per-sample cost, not a run of hours.
- ``study``: ``python -m src.tune --trials 30`` on the full real cache (a fresh study and MLflow
  store under the work dir), and 10-trial studies on 25 % and 50 % of the labelled samples.
- ``predict``: prediction from raw files on the test samples, against the raw forward.
- ``serve``: ``mlflow models serve`` on loopback with 1 and 2 ``--workers``; 1, 4 and 16 concurrent
  clients each send requests of ``SERVE_ROWS`` real test samples (base64 images) for
  ``--serve-seconds``: throughput, p50/p99 latency and errors, against the raw forward. The served
  model is the backbone with an untrained ``late`` head (speed does not depend on the weights),
  logged into a store under the work dir. The clients run on the same 2 cores as the server.
- ``top_layers``: for features.top_layers K = 0, 1, 2 on a share of the labelled samples, the
  featurize time and the cache size; then seconds per epoch of ``late`` and ``cross_attention`` with
  train.top_layers k = 0, 1, 2, against re-encoding the backbone every epoch (benchmarks/top_layers.py).
- ``runtime``: ``src.featurize`` on ``--runtime-fraction`` of the labelled samples with model.runtime torch,
  onnxruntime fp32 and onnxruntime int8 on the CPU: first exporting the towers, then ``--runtime-rounds``
  rounds of the three with the towers reused; featurize's own time, the speed-up against the round's
  torch run and peak memory (benchmarks/runtime.py).

On a GPU (``model.device`` auto) the same command reports GPU figures, with forward latency in
fp32, fp16 and bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from msc.core.errors import UserError, cli
from msc.core.files import atomic_write_text, check_output_folder
from msc.core.owned import BENCHMARK_MARK, has_mark, mark, refuse_foreign

SECTIONS = ("featurize", "trial", "study", "predict", "serve", "top_layers", "runtime")


def sections() -> dict:
    """Each section's function; imported after the arguments (torch, mlflow), so --help answers at once."""
    from benchmarks.featurize import bench_featurize
    from benchmarks.predict import bench_predict
    from benchmarks.runtime import bench_runtime
    from benchmarks.serve import bench_serve
    from benchmarks.study import bench_study
    from benchmarks.top_layers import bench_top_layers
    from benchmarks.trial import bench_trial

    return {"featurize": bench_featurize, "trial": bench_trial, "study": bench_study, "predict": bench_predict,
            "serve": bench_serve, "top_layers": bench_top_layers, "runtime": bench_runtime}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Speed and memory of featurize, tuning and predict, as ratios.")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/mvsa"))
    parser.add_argument("--backbone", default="models/vit-b-32-random")
    parser.add_argument("--work-dir", type=Path, default=Path(".benchmark"),
                        help="caches, studies and the JSON results (default: %(default)s)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--serve-seconds", type=float, default=60.0, help="load per client count (default: %(default)s)")
    parser.add_argument("--top-layers-fraction", type=float, default=0.1,
                        help="share of the labelled samples the top_layers section featurizes (default: %(default)s)")
    parser.add_argument("--runtime-fraction", type=float, default=0.05,
                        help="share of the labelled samples the runtime section featurizes (default: %(default)s)")
    parser.add_argument("--runtime-rounds", type=int, default=2,
                        help="rounds of torch, onnxruntime fp32 and int8 in the runtime section (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="use --work-dir even when it holds files that the "
                        "benchmark did not write (it replaces folders inside it)")
    args = parser.parse_args(argv)
    args.sections = args.only.split(",")
    if unknown := set(args.sections) - set(SECTIONS):
        raise UserError(f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if not args.data_root.is_dir():
        raise UserError(f"--data-root {args.data_root} is not a folder; point it at the real MVSA data")
    args.backbone = str(Path(args.backbone).resolve()) if Path(args.backbone).is_dir() else args.backbone
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from msc.features.manifest import MANIFEST

    bench = sections()
    work = args.work_dir.resolve()
    check_output_folder(work, "--work-dir")
    # The sections replace folders inside the work folder (caches, studies, data views).
    refuse_foreign([("--work-dir", work, args.force or has_mark(work, BENCHMARK_MARK))], "benchmark", "--force")
    work.mkdir(parents=True, exist_ok=True)
    mark(work, BENCHMARK_MARK, "benchmark")
    args.features = work / "features-all"  # the featurize section's full cache, reused by trial and study
    torch.manual_seed(0)
    for section in args.sections:
        if section in ("trial", "study") and not (args.features / MANIFEST).is_file():
            raise UserError(f"section {section} needs the featurize section's cache in {args.features}; "
                            "run with --only featurize first")
        started = time.perf_counter()
        result = {"section": section, "date": time.strftime("%Y-%m-%d"), "torch_threads": torch.get_num_threads(),
                  "cpu_count": os.cpu_count(), **bench[section](args, work)}
        result["section_seconds"] = time.perf_counter() - started
        atomic_write_text(work / f"{section}.json", json.dumps(result, indent=2) + "\n")
        print(f"{section}: wrote {work / f'{section}.json'}")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
