"""The towers in torch fp32, onnxruntime fp32 and onnxruntime dynamic int8, on the same batches of real posts.

    python -m benchmarks.onnx --backbone /tmp/vitb32 --data ../shared/mvsa --posts 256

(the backbone from ``python -m src.sample --no-data --backbone-shape vit-b-32 --tokenizer ../shared/clip-bpe
--backbone-out /tmp/vitb32``). Texts are normalised and tokenised as featurize does, padded to each
batch's longest; images are decoded and preprocessed once, outside the timings. Prints a Markdown
table: seconds per runtime and tower, the speed-up against torch, the size of the graphs, and the
cosine of the int8 pooled features to fp32's (random weights: real weights are judged by accuracy).
"""

from __future__ import annotations

import argparse
import tempfile
import time
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


if __name__ == "__main__":
    main()
