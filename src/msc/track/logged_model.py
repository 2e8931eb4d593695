"""Logging the pyfunc into MLflow: a trial's model, and the registered copy with its temperature and
probability rules.

A logged model ships only the library code it runs: ``msc.model`` and the layers below it
(``MODEL_CODE_LAYERS``), copied into the model's ``code/msc/``. It never ships the stage modules,
tune, track, the benchmark or the report. Each model also carries ``artifacts/digests.json``, the
sha256 of its entry, code, head.json and weights, checked before it runs (msc/model/integrity.py).
Versions logged before the ``msc`` package carry their own ``code/src/`` and still load
(msc/track/inference.py).
"""

from __future__ import annotations

import base64
import contextlib
import io
import shutil
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import load_file

from msc.core.errors import UserError
from msc.core.labels import probability_columns
from msc.core.paths import local_folder
from msc.model.explain import DRIVER_MARGIN
from msc.model.integrity import BYTECODE, CODE, DIGESTS, ENTRY, digests_text, shipped_code
from msc.model.provenance import ACCEPT_KEY, backbone_identity
from msc.model.spec import (
    HEAD_SPEC,
    HEAD_WEIGHTS,
    HeadSpec,
    head_spec,
    read_head_spec,
    with_calibration_spec,
    write_head,
)
from msc.model.usage import MAX_UNUSABLE_IMAGE_SHARE, NOTE, USED

MSC_PACKAGE = Path(__file__).resolve().parents[1]
MODEL_CODE_LAYERS = ("core", "data", "model")  # msc.model and what it imports (tests/unit/track/test_logged_model.py)
MODEL_ENTRY = MSC_PACKAGE / "model" / "pyfunc_entry.py"


def model_code(folder: Path) -> Path:
    """Copy the code a logged model runs into ``folder/msc``; returns that package folder."""
    package = folder / "msc"
    package.mkdir(parents=True)
    shutil.copy2(MSC_PACKAGE / "__init__.py", package / "__init__.py")
    for layer in MODEL_CODE_LAYERS:
        shutil.copytree(MSC_PACKAGE / layer, package / layer, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return package


def pip_requirements(runtime: str = "torch") -> list[str]:
    """Pinned to what trained the model; stated explicitly so MLflow need not infer them. A model whose
    features come from onnxruntime (head.json's ``runtime``) also needs it and onnx, which exports the towers."""
    from importlib.metadata import version

    packages = ["torch", "transformers", "safetensors", "pillow", "numpy", "pandas", "nltk", "mlflow", "scikit-learn",
                "rich", "pyyaml", "peft"] + (["onnx", "onnxruntime"] if runtime == "onnxruntime" else [])
    return [f"{name}=={version(name).split('+')[0]}" for name in packages]


def signature_and_example(labels: tuple[str, ...]):
    from mlflow.models import infer_signature

    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(jpeg, format="JPEG")
    example = pd.DataFrame({"text": ["what a lovely day #sunny"], "image": [base64.b64encode(jpeg.getvalue()).decode()]})
    output = pd.DataFrame({"label": [labels[0]], **{c: [1 / len(labels)] for c in probability_columns(labels)},
                           USED: ["text+image"], NOTE: [""]})  # what each row used (msc/model/usage.py)
    # Inference params, checked by MLflow against these types and defaults before predict runs.
    # coverage 0 means no label sets: an MLflow param needs a default of its own type, and no coverage is 0.
    params = {"explain": False, "driver_margin": DRIVER_MARGIN, "coverage": 0.0, "class_conditional": False}
    return infer_signature(example, output, params=params), example


# What `mlflow models serve` runs with (msc/model/inputs.py, msc/model/usage.py, msc/model/provenance.py);
# a caller may pass only keys logged here.
MODEL_CONFIG = {"trusted_input": False, "max_unusable_image_share": MAX_UNUSABLE_IMAGE_SHARE, ACCEPT_KEY: False}


def model_digests(artifacts: dict[str, str], code: Path, out: Path) -> Path:
    """Write to ``out`` the digests.json of a model with these artifacts, the code package ``code`` and
    MODEL_CONFIG, by each file's name in the logged model (msc/model/integrity.py); returns ``out``."""
    files = {ENTRY: MODEL_ENTRY, **{f"{CODE}/{path.relative_to(code.parent).as_posix()}": path
                                    for path in shipped_code(code)},
             **{f"artifacts/{Path(artifacts[key]).name}": Path(artifacts[key]) for key in ("head_config", "head_weights")}}
    if "backbone" in artifacts:  # register.bundle_backbone: the copied folder's every file (no caches), under its name
        bundled = Path(artifacts["backbone"])
        inside = {path.relative_to(bundled): path for path in sorted(bundled.rglob("*")) if path.is_file()}
        files.update({f"artifacts/{bundled.name}/{name.as_posix()}": path
                      for name, path in inside.items() if BYTECODE not in name.parts})
    out.write_text(digests_text(files, MODEL_CONFIG), encoding="utf-8")
    return out


BYTECODE_SWITCH = threading.Lock()  # sys.dont_write_bytecode is one flag for every thread (trials log in parallel)


@contextlib.contextmanager
def no_bytecode_written():
    """No ``__pycache__`` written while this runs. MLflow loads a model it logs (to check the input example)
    from the folder it uploads next, so the code's bytecode caches were logged with it (wherever Python
    writes them: not where PYTHONDONTWRITEBYTECODE is set), and digests.json covers no bytecode."""
    with BYTECODE_SWITCH:
        before, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            yield
        finally:
            sys.dont_write_bytecode = before


def log_pyfunc(artifacts: dict[str, str], name: str = "model"):
    """Log a model with these artifacts (head weights and spec, optionally the backbone folder) and the
    digests of its files into the active MLflow run; returns its ModelInfo. Its signature's output has
    the spec's labels."""
    spec = read_head_spec(artifacts["head_config"])
    signature, example = signature_and_example(tuple(spec.labels))
    with tempfile.TemporaryDirectory() as code, no_bytecode_written():
        package = model_code(Path(code) / "shipped")
        digests = model_digests(artifacts, package, Path(code) / Path(DIGESTS).name)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_ENTRY),
            artifacts={**artifacts, "digests": str(digests)},
            code_paths=[str(package)],
            model_config=MODEL_CONFIG,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(spec.runtime),
        )


def log_trial_model(head: torch.nn.Module, train, dim: int, backbone: str, revision: str,
                    max_text_tokens: int, labels: tuple[str, ...], family: str | None = None,
                    identity: str | None = None, runtime: tuple[str, str] = ("torch", "auto")):
    """A trial's model: the head (with its trained top layers, if any), with the backbone referenced
    by hub id or folder, never copied (30 trials would hold 30 copies), and identified by ``identity``
    (the feature cache's ``backbone_identity``; when not given, the backbone's identity now, so that no
    model is logged that cannot check its backbone). Only the registered version may bundle it (registered_copy).
    ``train`` is the train section (msc.train.config.TrainConfig, a dataclass that head.json records; not
    imported here: track and train are independent layers). ``runtime``: model.runtime and model.precision of
    the features, which the model computes new posts' features with (onnxruntime) or records (torch)."""
    identity = identity or backbone_identity(backbone, revision)
    spec = head_spec(asdict(train), dim, backbone, revision, max_text_tokens, labels, family, identity, runtime)
    with tempfile.TemporaryDirectory() as tmp:
        return log_pyfunc(write_head(head, spec, Path(tmp)))


def download_head(model_uri: str, folder: Path) -> dict[str, str]:
    """Download ``model_uri``'s head.json and head.safetensors alone into ``folder`` (not a backbone the
    registered version may bundle); returns the pyfunc artifacts mapping. ``models:/`` URIs of a logged
    model (``models:/m-<id>``) take no sub-path, so those resolve to the files they stand for first."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    root = ModelsArtifactRepository.get_underlying_uri(model_uri) if model_uri.startswith("models:/") else model_uri
    return {key: mlflow.artifacts.download_artifacts(artifact_uri=f"{root.rstrip('/')}/artifacts/{name}",
                                                     dst_path=str(folder))
            for key, name in (("head_config", HEAD_SPEC), ("head_weights", HEAD_WEIGHTS))}


def logged_head(model_uri: str) -> tuple[HeadSpec, dict[str, torch.Tensor]]:
    """The head spec and saved weights of ``model_uri``, from those two files alone: enough to rebuild its
    head (msc.model.spec.build_logged_head) and score cached features without loading a backbone."""
    with tempfile.TemporaryDirectory() as tmp:
        files = download_head(model_uri, Path(tmp))
        return read_head_spec(files["head_config"]), load_file(files["head_weights"])


def registered_copy(model_uri: str, temperature: float, rules: dict | None = None, backbone: str | None = None):
    """Log ``model_uri``'s head again as ``registered_model`` in the active run, with its fitted
    ``temperature`` and probability ``rules`` (ProbabilityRules.to_dict()) in head.json, written before
    the digests are, and, when ``backbone`` names a local folder, that folder copied in, so the
    registered version loads where the folder does not exist."""
    artifacts = {}
    if backbone is not None:
        folder = local_folder(backbone)
        if folder is None:
            raise UserError(f"register.bundle_backbone needs model.backbone to be a local folder, got '{backbone}'")
        artifacts["backbone"] = str(folder.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        head = download_head(model_uri, Path(tmp))
        with_calibration_spec(Path(head["head_config"]), temperature, rules)
        return log_pyfunc({**artifacts, **head}, name="registered_model")
