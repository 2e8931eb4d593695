"""The model users load from the registry: an MLflow pyfunc around backbone + fusion head.

Input: a DataFrame with ``text`` (the raw tweet) and ``image`` (the image bytes base64-encoded; a
file path only for a trusted caller, see src/model_input.py). Output: one row per input with
``label`` and ``p_positive``, ``p_neutral``, ``p_negative``, calibrated with the temperature that
the registry fitted on the validation split (src/calibration.py).

The logged model holds the head weights (safetensors, never pickle), ``head.json`` (fusion
config and backbone reference) and the project's code; the backbone is referenced by hub id and
revision or local folder; the registered version bundles a local folder with
``register.bundle_backbone: true``. It is logged as
"model from code" (``src/pyfunc_model.py``), so loading it unpickles nothing.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from src import LABELS
from src.backbone import Backbone, load_backbone
from src.config import TrainConfig
from src.data import normalize_tweet
from src.errors import UserError
from src.features import FeatureBatch, drop_modality
from src.heads import FusionHead, build_head
from src.model_input import check_columns, check_request, read_trusted, read_untrusted
from src.paths import local_folder

PROBABILITY_COLUMNS = [f"p_{label}" for label in LABELS]
PREDICT_BATCH = 64
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
SRC_DIR = Path(__file__).parent


def to_cache_precision(features: torch.Tensor) -> torch.Tensor:
    """Round to float16 and back, exactly as the feature cache stores features."""
    return features.half().float()


def encode_inputs(backbone: Backbone, texts: list[str | None], images: list[np.ndarray | None],
                  max_text_tokens: int) -> FeatureBatch:
    """Raw tweets and preprocessed images ((3, H, W) from ``backbone.preprocess_image``) -> the
    FeatureBatch a head reads, with featurize's preprocessing.

    A None text or image is a missing modality: its features are zeros, as in modality dropout.
    """
    encoded = backbone.tokenize([normalize_tweet(text or "") for text in texts], max_text_tokens)
    blank = backbone.preprocess_image(Image.new("RGB", (32, 32)))  # a missing image's placeholder; zeroed below
    pixels = torch.from_numpy(np.stack([blank if image is None else image for image in images]))
    with torch.inference_mode():
        text_pooled, text_tokens = backbone.encode_text(encoded["input_ids"], encoded["attention_mask"])
        image_pooled, image_tokens = backbone.encode_image(pixels)
    batch = FeatureBatch(
        text_pooled=to_cache_precision(text_pooled.cpu()),
        image_pooled=to_cache_precision(image_pooled.cpu()),
        text_tokens=to_cache_precision(text_tokens.cpu()),
        text_mask=encoded["attention_mask"].bool(),
        image_tokens=to_cache_precision(image_tokens.cpu()),
    )
    missing_text = np.array([i for i, text in enumerate(texts) if text is None], dtype=np.int64)
    missing_image = np.array([i for i, image in enumerate(images) if image is None], dtype=np.int64)
    return drop_modality(batch, missing_text, missing_image)


class MscModel(mlflow.pyfunc.PythonModel):
    """The pyfunc. ``src/pyfunc_model.py`` hands an instance to MLflow (model from code)."""

    def load_context(self, context) -> None:
        spec = json.loads(Path(context.artifacts["head_config"]).read_text())
        backbone_ref = context.artifacts.get("backbone") or backbone_reference(spec)
        self.backbone = load_backbone(backbone_ref, spec["revision"], device="auto", precision="auto")
        self.head = build_head(spec["fusion"], spec["dim"], spec["hidden_dim"], spec["dropout"])
        self.head.load_state_dict(load_file(context.artifacts["head_weights"]))
        self.head.eval()
        # Fitted on the validation split when the version was registered; 1 (none) for a trial's model.
        self.temperature = float(spec.get("temperature", 1.0))
        self.max_text_tokens = spec["max_text_tokens"]
        # Set by the caller at load time, never by a request: src.predict and in-process code pass
        # model_config={"trusted_input": True}; `mlflow models serve` keeps the logged False.
        self.trusted_input = bool((context.model_config or {}).get("trusted_input", False))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        check_columns(model_input)
        if not self.trusted_input:
            check_request(model_input)
        read = read_trusted if self.trusted_input else read_untrusted
        probabilities = []
        for start in range(0, len(model_input), PREDICT_BATCH):
            chunk = model_input.iloc[start : start + PREDICT_BATCH]
            texts, images = read(chunk, self.backbone.preprocess_image)
            batch = encode_inputs(self.backbone, texts, images, self.max_text_tokens)
            with torch.inference_mode():
                probabilities.append(torch.softmax(self.head(batch) / self.temperature, dim=-1).numpy())
        probs = np.concatenate(probabilities) if probabilities else np.zeros((0, len(LABELS)))
        out = pd.DataFrame(probs, columns=PROBABILITY_COLUMNS, index=model_input.index)
        out.insert(0, "label", [LABELS[i] for i in probs.argmax(1)])
        return out


def backbone_reference(spec: dict) -> str:
    """The backbone a logged head names: ``model.backbone`` as written (a hub id, or a folder that
    resolves against the loading project, so nothing of one machine's paths leaks to another),
    else the folder where it was on the machine that trained the head, when that exists here."""
    folder_then = spec.get("backbone_folder")
    if local_folder(spec["backbone"]) is None and folder_then and Path(folder_then).is_dir():
        return folder_then
    return spec["backbone"]


def write_head(head: FusionHead, train: TrainConfig, dim: int, backbone: str, revision: str,
               max_text_tokens: int, folder: Path) -> dict[str, str]:
    """Save weights and config into ``folder``; returns the pyfunc artifacts mapping."""
    backbone_folder = local_folder(backbone)
    spec = {"fusion": train.fusion, "dim": dim, "hidden_dim": train.hidden_dim, "dropout": train.dropout,
            "backbone": backbone, "backbone_folder": str(backbone_folder.resolve()) if backbone_folder else None,
            "revision": revision, "max_text_tokens": max_text_tokens, "labels": list(LABELS), "train": asdict(train)}
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(folder / "head.safetensors"))
    (folder / "head.json").write_text(json.dumps(spec, indent=2))
    return {"head_weights": str(folder / "head.safetensors"), "head_config": str(folder / "head.json")}


def pip_requirements() -> list[str]:
    """Pinned to what trained the model; stated explicitly so MLflow need not infer them."""
    from importlib.metadata import version

    packages = ["torch", "transformers", "safetensors", "pillow", "numpy", "pandas", "nltk", "mlflow", "scikit-learn",
                "rich", "pyyaml"]
    return [f"{name}=={version(name).split('+')[0]}" for name in packages]


def signature_and_example():
    from mlflow.models import infer_signature

    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(jpeg, format="JPEG")
    example = pd.DataFrame({"text": ["what a lovely day #sunny"], "image": [base64.b64encode(jpeg.getvalue()).decode()]})
    output = pd.DataFrame({"label": ["positive"], **{c: [1 / 3] for c in PROBABILITY_COLUMNS}})
    return infer_signature(example, output), example


def log_pyfunc(artifacts: dict[str, str], name: str = "model"):
    """Log a model with these artifacts (head weights and config, optionally the backbone folder)
    into the active MLflow run; returns its ModelInfo."""
    signature, example = signature_and_example()
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(MODEL_CODE),
        artifacts=artifacts,
        code_paths=[str(SRC_DIR)],
        model_config={"trusted_input": False},  # what `mlflow models serve` runs with: see src/model_input.py
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
    )


def log_trial_model(head: FusionHead, train: TrainConfig, dim: int, backbone: str, revision: str,
                    max_text_tokens: int):
    """A trial's model: the head, with the backbone referenced by hub id or folder, never copied
    (30 trials would hold 30 copies). Only the registered version may bundle it (registered_copy)."""
    with tempfile.TemporaryDirectory() as tmp:
        return log_pyfunc(write_head(head, train, dim, backbone, revision, max_text_tokens, Path(tmp)))


def registered_copy(model_uri: str, temperature: float, backbone: str | None = None):
    """Log ``model_uri``'s head again as ``registered_model`` in the active run, with its fitted
    ``temperature`` in head.json and, when ``backbone`` names a local folder, that folder copied
    in, so the registered version loads where the folder does not exist."""
    artifacts = {}
    if backbone is not None:
        folder = local_folder(backbone)
        if folder is None:
            raise UserError(f"register.bundle_backbone needs model.backbone to be a local folder, got '{backbone}'")
        artifacts["backbone"] = str(folder.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))  # small: no backbone
        spec = json.loads((model / "artifacts" / "head.json").read_text())
        (model / "artifacts" / "head.json").write_text(json.dumps({**spec, "temperature": temperature}, indent=2))
        artifacts.update({"head_weights": str(model / "artifacts" / "head.safetensors"),
                          "head_config": str(model / "artifacts" / "head.json")})
        return log_pyfunc(artifacts, name="registered_model")
