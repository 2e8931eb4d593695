"""The towers in torch fp32, onnxruntime fp32 and onnxruntime dynamic int8, on the same batches of real posts.

    python -m benchmarks.onnx --backbone /tmp/vitb32 --data ../shared/mvsa --posts 256

(the backbone from ``python -m src.sample --no-data --backbone-shape vit-b-32 --tokenizer ../shared/clip-bpe
--backbone-out /tmp/vitb32``). Texts are normalised and tokenised as featurize does, padded to each
batch's longest; images are decoded and preprocessed once, outside the timings. Prints a Markdown
table: seconds per runtime and tower, the speed-up against torch, the size of the graphs, and the
cosine of the int8 pooled features to fp32's (random weights: real weights are judged by accuracy).

``--fused`` adds the image tower after onnxruntime.transformers' optimizer (model_type vit: attention,
LayerNorm and GELU fused into single kernels). ``--profile DIR`` prints where each runtime spends the image
tower's first batch: the operators with the most time in torch's profiler and in onnxruntime's (fp32 and,
with --fused, fused), their JSON traces left in DIR.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from msc.data.images import open_image
from msc.data.text import decode_text, normalize_tweet
from msc.model.backbone import load_backbone
from msc.model.onnx_export import export_towers


def posts(data: Path, count: int) -> tuple[list[str], list[Path]]:
    """The first ``count`` posts (by guid) of an MVSA folder that have both a text and an image."""
    folder = data / "data"
    guids = sorted(int(p.stem) for p in folder.glob("*.txt") if (folder / f"{p.stem}.jpg").is_file())[:count]
    return ([normalize_tweet(decode_text((folder / f"{g}.txt").read_bytes())[0]) for g in guids],
            [folder / f"{g}.jpg" for g in guids])


def timed(run, batches: list) -> tuple[float, list]:
    started = time.perf_counter()
    outputs = [run(batch) for batch in batches]
    return time.perf_counter() - started, outputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--posts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fused", action="store_true", help="also the image tower fused by onnxruntime's optimizer")
    parser.add_argument("--profile", type=Path, help="print per-operator profiles of the image tower; traces here")
    args = parser.parse_args(argv)
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    backbone = load_backbone(args.backbone, device="cpu", precision="fp32")
    texts, images = posts(args.data, args.posts)
    size = args.batch_size
    tokens = [backbone.tokenize(texts[i : i + size], 77) for i in range(0, len(texts), size)]
    pixels = [torch.from_numpy(np.stack([backbone.preprocess_image(open_image(str(p))) for p in images[i : i + size]]))
              for i in range(0, len(images), size)]
    folder = Path(tempfile.mkdtemp(prefix="msc-onnx-bench-"))
    started = time.perf_counter()
    graphs = {"fp32": export_towers(backbone, folder)}
    export_s = time.perf_counter() - started
    graphs["int8"] = tuple(folder / f"{g.stem}.int8.onnx" for g in graphs["fp32"])
    for source, target in zip(graphs["fp32"], graphs["int8"]):
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    rows, pooled = [], {}
    with torch.inference_mode():
        for tower, batches, run in (
                ("text", tokens, lambda b: backbone.encode_text(b["input_ids"], b["attention_mask"]).pooled.numpy()),
                ("image", pixels, lambda b: backbone.encode_image(b).pooled.numpy())):
            seconds, outputs = timed(run, batches)
            rows.append((tower, "torch fp32", seconds, None))
            pooled[tower, "torch"] = np.concatenate(outputs)
    for precision, (text_graph, image_graph) in graphs.items():
        for tower, graph, batches, feed in (
                ("text", text_graph, tokens, lambda b: {"input_ids": b["input_ids"].numpy(),
                                                        "attention_mask": b["attention_mask"].numpy()}),
                ("image", image_graph, pixels, lambda b: {"pixel_values": b.numpy()})):
            session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            def run_graph(b, session=session, feed=feed, names=names):  # bound now: timed() calls it in this loop
                return session.run(["pooled"], {k: v for k, v in feed(b).items() if k in names})[0]

            seconds, outputs = timed(run_graph, batches)
            rows.append((tower, f"onnxruntime {precision}", seconds, graph.stat().st_size))
            pooled[tower, precision] = np.concatenate(outputs)
    lengths = [b["input_ids"].shape[1] for b in tokens]
    print(f"{len(texts)} posts of {args.data}, batch {size}, text lengths {min(lengths)}-{max(lengths)} tokens; "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}; "
          f"export of both towers {export_s:.1f} s\n")
    print("| tower | runtime | seconds | posts/s | vs torch fp32 | graph MB | cosine to fp32 |")
    print("|---|---|---|---|---|---|---|")
    for tower, runtime, seconds, size_bytes in rows:
        reference = next(s for t, r, s, _ in rows if t == tower and r == "torch fp32")
        key = (tower, runtime.split()[-1] if runtime != "torch fp32" else "torch")
        a, b = pooled[key], pooled[tower, "torch"]
        cosine = float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())
        print(f"| {tower} | {runtime} | {seconds:.2f} | {len(texts) / seconds:.0f} | {reference / seconds:.2f}x | "
              f"{'' if size_bytes is None else f'{size_bytes / 2**20:.0f}'} | {cosine:.4f} (min) |")

    if args.fused or args.profile:
        extras(backbone, graphs, pixels, pooled, args)


def extras(backbone, graphs: dict, pixels: list, pooled: dict, args) -> None:
    """--fused and --profile: the image tower fused by onnxruntime's transformer optimizer, and per-operator
    profiles of the image tower's first batch."""
    import onnxruntime

    image_graphs = {"fp32": graphs["fp32"][1]}
    if args.fused:
        from onnxruntime.transformers.optimizer import optimize_model

        vision = backbone.model.config.vision_config
        fused = graphs["fp32"][1].with_name("image.fused.onnx")
        optimize_model(str(graphs["fp32"][1]), model_type="vit", num_heads=vision.num_attention_heads,
                       hidden_size=vision.hidden_size).save_model_to_file(str(fused))
        session = onnxruntime.InferenceSession(str(fused), providers=["CPUExecutionProvider"])
        seconds, outputs = timed(lambda b: session.run(["pooled"], {"pixel_values": b.numpy()})[0], pixels)
        a, b = np.concatenate(outputs), pooled["image", "torch"]
        cosine = float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())
        print(f"\nimage tower, onnxruntime fp32 fused: {seconds:.2f} s, cosine to torch fp32 {cosine:.6f} (min)")
        image_graphs["fused"] = fused
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        first = pixels[0]
        with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as trace:
            backbone.encode_image(first)
        print_top("torch fp32", {e.key: e.self_cpu_time_total for e in trace.key_averages()})
        for name, graph in image_graphs.items():
            print_top(f"onnxruntime {name}", onnx_op_times(graph, {"pixel_values": first.numpy()}, args.profile / name))


def onnx_op_times(graph: Path, feed: dict, prefix: Path) -> dict[str, float]:
    """Microseconds per operator type of one run of ``graph`` on ``feed`` (the mean of two; kernel time only,
    so the first run's allocations are not in it), from onnxruntime's own profiler; its JSON trace stays at
    ``prefix``*."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling, options.profile_file_prefix = True, str(prefix)
    profiled = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    profiled.run(["pooled"], feed)
    profiled.run(["pooled"], feed)
    events = json.loads(Path(profiled.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 2  # two profiled runs: per run
    return totals


def print_top(runtime: str, micros: dict[str, float], count: int = 8) -> None:
    total = sum(micros.values())
    top = sorted(micros.items(), key=lambda item: -item[1])[:count]
    print(f"\n{runtime}, image tower, one batch: {total / 1e6:.2f} s in operators; "
          + ", ".join(f"{op} {t / total:.0%}" for op, t in top))


if __name__ == "__main__":
    main()
