"""Section ``runtime``: ``src.featurize`` with model.runtime torch (fp32 on the CPU), onnxruntime fp32 and
onnxruntime int8 on the same posts, each a process of its own: featurize's own seconds and peak memory (PSS).

The tower cache is this section's own and starts empty: onnxruntime's first run of each precision includes
exporting the towers (int8's, quantizing the fp32 export). Then ``--runtime-rounds`` rounds run torch,
fp32 and int8 with the towers reused (what every later featurize and predict on the machine pays), one
after the other, so that a change of the machine's load shows as a spread between rounds rather than
as a difference between runtimes; the speed-ups are each round's, against that round's torch run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from benchmarks.common import dataset_view, run_module, write_params
from msc.data.dataset import load_dataset
from msc.data.posts import DataSource
from msc.model.onnx_towers import CACHE_ENV

RUNTIMES = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))


def build_seconds(output: str) -> float:
    """featurize's own time for the cache (``built in 12.3s``): the run less the process start and imports."""
    return float(re.search(r"built in ([0-9.]+)s", output).group(1))


def featurize_once(args, work: Path, root: Path, runtime: str, precision: str, towers: Path) -> dict:
    name = f"{runtime}-{precision}"
    params = write_params(work / f"runtime-{name}.yaml", root, args.backbone, work / f"features-{name}",
                          model={"runtime": runtime, "precision": precision, "device": "cpu"})
    wall, peak, output = run_module("src.featurize", ["--params", str(params), "--force"], work, sample_memory=True,
                                    env={CACHE_ENV: str(towers)})
    run = {"runtime": runtime, "precision": precision, "seconds": wall, "build_seconds": build_seconds(output),
           "peak_pss_bytes": peak}
    print(f"featurize {name}: {run['build_seconds']:.1f}s, peak {peak / 2**30:.2f} GiB")
    return run


def bench_runtime(args, work: Path) -> dict:
    root = dataset_view(args.data_root, work / "data-runtime", args.runtime_fraction, add_unlisted=False,
                        with_test=False)
    towers = work / "onnx-towers"
    shutil.rmtree(towers, ignore_errors=True)
    exports = [featurize_once(args, work, root, runtime, precision, towers) for runtime, precision in RUNTIMES[1:]]
    rounds = []
    for _ in range(args.runtime_rounds):
        runs = [featurize_once(args, work, root, runtime, precision, towers) for runtime, precision in RUNTIMES]
        for run in runs:
            run["speedup_vs_torch_fp32"] = runs[0]["build_seconds"] / run["build_seconds"]
        rounds.append(runs)
    return {"samples": len(load_dataset(DataSource(root)).samples), "first_runs_with_export": exports,
            "rounds": rounds, "tower_mb": {path.name: sum(f.stat().st_size for f in path.iterdir()) / 1e6
                                           for path in towers.iterdir() if not path.name.startswith(".")}}
