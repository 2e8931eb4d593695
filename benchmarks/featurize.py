"""Section ``featurize``: ``src.featurize`` on a quarter and on all of the samples (wall time and
peak memory of the process tree), against the backbone's raw forward on the same batches."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.common import MAX_TOKENS, dataset_view, forward_inputs, forward_throughput, run_module, write_params
from msc.data.dataset import load_dataset
from msc.data.posts import Dataset, DataSource
from msc.model.backbone import load_backbone


def featurize_runs(args, work: Path, roots: dict[str, Path]) -> dict[str, dict]:
    """``src.featurize --force`` on each data folder of ``roots``: samples, seconds, peak PSS, output."""
    runs = {}
    for name, root in roots.items():
        params = write_params(work / f"featurize-{name}.yaml", root, args.backbone, work / f"features-{name}")
        wall, peak, output = run_module("src.featurize", ["--params", str(params), "--force"], work,
                                        sample_memory=True)
        n = len(load_dataset(DataSource(root)).samples)
        runs[name] = {"samples": n, "seconds": wall, "samples_per_s": n / wall, "peak_pss_bytes": peak,
                      "output_tail": output[-800:]}  # featurize's own per-phase times
        print(f"featurize {name}: {n} samples in {wall:.1f}s, peak memory (PSS) {peak / 2**30:.2f} GiB")
    return runs


def forward_by_precision(backbone_name: str, dataset: Dataset) -> tuple[str, dict[str, dict]]:
    """The backbone's device, and its raw forward throughput in fp32 and in the lower precisions
    this machine runs (fp16 and bf16 on a GPU, bf16 on a CPU that has it)."""
    backbone = load_backbone(backbone_name)
    texts, pixels = forward_inputs(backbone, dataset, MAX_TOKENS)
    forward = {"fp32": forward_throughput(backbone, texts, pixels, MAX_TOKENS)}
    if backbone.device.type == "cuda":
        for precision in ("fp16", "bf16"):
            low = load_backbone(backbone_name, device="cuda", precision=precision)
            forward[precision] = forward_throughput(low, texts, pixels.to(low.dtype), MAX_TOKENS)
    elif torch.ops.mkldnn._is_mkldnn_bf16_supported():
        low = load_backbone(backbone_name, device="cpu", precision="bf16")
        forward["bf16"] = forward_throughput(low, texts, pixels.to(low.dtype), MAX_TOKENS)
    return str(backbone.device), forward


def bench_featurize(args, work: Path) -> dict:
    full_root = dataset_view(args.data_root, work / "data-all", add_unlisted=True)
    quarter_root = dataset_view(args.data_root, work / "data-quarter", 0.25, add_unlisted=False)
    dataset = load_dataset(DataSource(full_root))
    runs = featurize_runs(args, work, {"quarter": quarter_root, "all": full_root})
    device, forward = forward_by_precision(args.backbone, dataset)
    cache_bytes = sum(p.stat().st_size for p in (work / "features-all").iterdir())
    return {"device": device, "runs": runs, "forward": forward, "cache_bytes": cache_bytes,
            "ratio": runs["all"]["samples_per_s"] / forward["fp32"]["sample_per_s"],
            "memory_ratio_all_vs_quarter": runs["all"]["peak_pss_bytes"] / runs["quarter"]["peak_pss_bytes"]}
