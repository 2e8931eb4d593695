"""Section ``runtime``: ``src.featurize`` with model.runtime torch (fp32 on the CPU), onnxruntime fp32 and
onnxruntime int8 on the same posts, each a process of its own: wall time and peak memory (PSS).

The tower cache is this section's own and starts empty: onnxruntime's first run includes exporting the
towers (int8's, quantizing the fp32 export, which the fp32 run left behind); a second, forced run of each
reuses them, which is what every later featurize and predict on the machine pays.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from benchmarks.common import dataset_view, run_module, write_params
from msc.data.dataset import load_dataset
from msc.data.posts import DataSource
from msc.model.onnx_towers import CACHE_ENV

RUNS = (("torch", "fp32", False), ("onnxruntime", "fp32", False), ("onnxruntime", "fp32", True),
        ("onnxruntime", "int8", False), ("onnxruntime", "int8", True))  # (runtime, precision, towers reused)


def build_seconds(output: str) -> float:
    """featurize's own time for the cache (``built in 12.3s``): the run less the process start and imports."""
    return float(re.search(r"built in ([0-9.]+)s", output).group(1))


def bench_runtime(args, work: Path) -> dict:
    root = dataset_view(args.data_root, work / "data-runtime", args.runtime_fraction, add_unlisted=False,
                        with_test=False)
    samples = len(load_dataset(DataSource(root)).samples)
    towers = work / "onnx-towers"
    shutil.rmtree(towers, ignore_errors=True)
    runs = []
    for runtime, precision, reused in RUNS:
        name = f"{runtime}-{precision}"
        params = write_params(work / f"runtime-{name}.yaml", root, args.backbone, work / f"features-{name}",
                              model={"runtime": runtime, "precision": precision, "device": "cpu"})
        wall, peak, output = run_module("src.featurize", ["--params", str(params), "--force"], work, sample_memory=True,
                                        env={CACHE_ENV: str(towers)})
        runs.append({"runtime": runtime, "precision": precision, "towers_reused": reused, "samples": samples,
                     "seconds": wall, "build_seconds": build_seconds(output), "peak_pss_bytes": peak})
        print(f"featurize {name}{' (towers reused)' if reused else ''}: {samples} posts in {wall:.1f}s "
              f"(cache built in {runs[-1]['build_seconds']:.1f}s), peak {peak / 2**30:.2f} GiB")
    torch_build = runs[0]["build_seconds"]
    for run in runs:
        run["speedup_vs_torch_fp32"] = torch_build / run["build_seconds"]
    return {"samples": samples, "runs": runs, "tower_mb": {path.name: sum(f.stat().st_size for f in path.iterdir()) / 1e6
                                                           for path in towers.iterdir() if not path.name.startswith(".")}}
