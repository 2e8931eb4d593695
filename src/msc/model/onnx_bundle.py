"""A self-contained bundle of a model for onnxruntime: what ``python -m src.export`` writes.

    text_tower.onnx, image_tower.onnx   the backbone's towers (msc/model/onnx_export.py); for a model of
                                        model.runtime: onnxruntime, the ones it runs (int8 included)
    head.onnx                           the fusion head: features -> logits
    tokenizer.json                      the backbone's tokenizer, for the ``tokenizers`` library
    preprocess.json                     the text and image preprocessing rules and constants
    model.json                          labels, temperature, quantized (int8 towers), and the whole head.json
                                        under "head"
    predict.py                          the reference script (msc/model/bundle_predict.py)
    tweet_tokens.py                     its tweet tokenizer (NLTK's expressions, msc/model/tweet_tokens.py)
    digests.sha256                      sha256 of every other file, as ``sha256sum -c`` reads it

``model.json`` carries head.json whole, so whatever calibration a later head.json holds travels with it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from msc.core.files import atomic_write_text
from msc.data.images import DRAFT_SIZE, MAX_ASPECT
from msc.data.text import TOKENIZED_CHARS
from msc.model.backbone import Backbone
from msc.model.heads import FusionHead
from msc.model.onnx_export import HEAD, IMAGE_TOWER, TEXT_TOWER, export_head, export_towers

SCRIPT = Path(__file__).with_name("bundle_predict.py")
TWEETS = Path(__file__).with_name("tweet_tokens.py")  # the script's tweet tokenizer, loaded from beside it
RULES = Path(__file__).with_name("calibrated.py")  # the probability rules head.json holds, applied as the pyfunc does
DIGESTS = "digests.sha256"
BUNDLE_VERSION = 1


def image_rule(backbone: Backbone) -> dict:
    """The image processor's resize, crop, rescale and normalisation, and open_image's rules, as JSON."""
    processor = backbone.processor.image_processor
    size = dict(processor.size)
    rule = {"processor": type(processor).__name__, "resample": int(processor.resample),
            "rescale": float(processor.rescale_factor) if processor.do_rescale else 1.0,
            "mean": [float(m) for m in processor.image_mean] if processor.do_normalize else [0.0, 0.0, 0.0],
            "std": [float(s) for s in processor.image_std] if processor.do_normalize else [1.0, 1.0, 1.0],
            "input": backbone.model.config.vision_config.image_size,
            "max_aspect": MAX_ASPECT, "draft": list(DRAFT_SIZE)}
    if size.get("shortest_edge"):
        rule.update(resize="shortest_edge", size=size["shortest_edge"])
    else:
        rule.update(resize="exact", height=size["height"], width=size["width"])
    if getattr(processor, "do_center_crop", False):
        crop = dict(processor.crop_size)
        rule["crop"] = [crop["height"], crop["width"]]
    return rule


def text_rule(backbone: Backbone, max_text_tokens: int) -> dict:
    """How ``Backbone.tokenize`` pads and truncates, as JSON (SigLIP: always to its trained length)."""
    tokenizer = backbone.processor.tokenizer
    probe = backbone.tokenize(["a"], max_text_tokens)["input_ids"]
    fixed = not backbone.causal_text  # SiglipBackbone.tokenize pads every text to the trained length
    return {"padding": "max_length" if fixed else "longest", "max_length": probe.shape[1] if fixed else max_text_tokens,
            "pad_id": int(tokenizer.pad_token_id), "chars": TOKENIZED_CHARS}


def write_tokenizer(backbone: Backbone, path: Path) -> None:
    """The fast tokenizer's own JSON, without padding or truncation (preprocess.json sets those)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(backbone.processor.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    atomic_write_text(path, tokenizer.to_str())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(backbone: Backbone, head: FusionHead, head_json: dict, source: str, out: Path,
                 towers: Path | None = None) -> Path:
    """Write the bundle of ``head`` over ``backbone`` (fp32, CPU) into ``out``, whole or not at all:
    it is built beside ``out`` and renamed over it. ``head_json``: the model's head.json as read.
    ``towers``: the folder of the towers the model runs (model.runtime: onnxruntime, fp32 or int8,
    msc/model/onnx_towers.py), copied as they are; else they are exported from ``backbone``."""
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if towers is None:
            export_towers(backbone, staging)
        for name in (TEXT_TOWER, IMAGE_TOWER) if towers else ():
            shutil.copyfile(towers / name, staging / name)
        export_head(head.eval(), backbone.dim, backbone.image_tokens, staging / HEAD)
        write_tokenizer(backbone, staging / "tokenizer.json")
        rules = {"text": text_rule(backbone, head_json["max_text_tokens"]), "image": image_rule(backbone)}
        atomic_write_text(staging / "preprocess.json", json.dumps(rules, indent=2) + "\n")
        # quantized: int8 towers, which predict.py runs one post at a time (msc/model/onnx_towers.py says why)
        model = {"bundle_version": BUNDLE_VERSION, "source": source, "family": backbone.family,
                 "quantized": head_json.get("precision") == "int8" and towers is not None,
                 "labels": list(head_json["labels"]), "temperature": float(head_json.get("temperature", 1.0)),
                 "head": head_json}
        atomic_write_text(staging / "model.json", json.dumps(model, indent=2) + "\n")
        shutil.copyfile(SCRIPT, staging / "predict.py")
        shutil.copyfile(TWEETS, staging / TWEETS.name)
        shutil.copyfile(RULES, staging / RULES.name)
        digests = "".join(f"{sha256(path)}  {path.name}\n" for path in sorted(staging.iterdir()))
        atomic_write_text(staging / DIGESTS, digests)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
