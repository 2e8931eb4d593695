"""The model users load from the registry: an MLflow pyfunc around backbone + fusion head.

Input: a DataFrame with ``text`` (the raw tweet) and ``image`` (the image bytes base64-encoded; a
file path only for a trusted caller, see msc/model/inputs.py). Output: one row per input with
``label`` and one probability ``p_<label>`` per label of the model's label set (head.json's
``labels``; the course's ``p_positive``, ``p_neutral``, ``p_negative``). Both come from head.json's
probability rules, fitted on out-of-fold rows when the version was registered (msc/tune/registration.py,
msc/model/calibrated.py): the ``p_<label>`` are the calibrated probabilities, ``label`` is the decision
rule's (the argmax of the probabilities times per-class weights, so it can differ from the largest
``p_<label>``); a version registered before the rules has its temperature and the plain argmax. With the
inference param ``coverage`` in (0, 1) (0, the default, is off), also ``label_set``: the labels the model
cannot rule out at that coverage, joined by ``|`` (split conformal; ``class_conditional: true`` for
coverage per class); with ``explain: true``, also ``attr_text``, ``attr_image`` and ``driver``
(msc/model/explain.py). Last, always,
``used`` (``text+image``, ``text``, ``image`` or ``none``: the modalities the prediction read) and
``input_note`` (empty, or why a text or image the caller sent was not used), msc/model/usage.py: a
trusted caller's unusable image is in that call's output, not only in a log. A trusted batch in which
more than ``model_config["max_unusable_image_share"]`` (default 0.5) of the images sent could not be
used raises an MlflowException (a bad request) naming the first rows and why.

The logged model holds the head weights (safetensors, never pickle; with ``train.top_layers`` k > 0
also its top blocks, or their LoRA adapters), ``head.json`` (msc/model/spec.py)
and the code of ``msc.model`` and the layers below it (msc/track/logged_model.py); the backbone is
referenced by hub id and revision or local folder, and identified by the commit that revision named
or the folder's file digest, which loading checks (msc/model/provenance.py); the registered version
bundles a local folder with ``register.bundle_backbone: true``. It is logged as "model from code" (msc/model/pyfunc_entry.py), so
loading it unpickles nothing.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from PIL import Image
from safetensors.torch import load_file

from msc.core.errors import UserError
from msc.core.labels import probability_columns
from msc.data.text import normalize_tweet
from msc.model.backbone import Backbone, load_backbone
from msc.model.batch import FeatureBatch, drop_modality
from msc.model.calibrated import CalibrationMap, ProbabilityRules, label_set_names
from msc.model.deadline import check_deadline
from msc.model.explain import DRIVER_MARGIN, drivers, modality_attribution
from msc.model.inputs import (
    LOGGER,
    check_columns,
    check_request,
    hide_parser_tracebacks,
    read_trusted,
    read_untrusted,
    served,
)
from msc.model.onnx_towers import TOP_LAYERS_REFUSED, runtime_backbone
from msc.model.provenance import accepts_change, checked_revision
from msc.model.spec import backbone_reference, build_logged_head, read_head_spec
from msc.model.usage import (
    MAX_UNUSABLE_IMAGE_SHARE,
    NOTE,
    USED,
    images_sent,
    unusable_images,
    unusable_images_sentence,
    used_modalities,
)

# Rows read, decoded and encoded at once: a batch of any size (a Spark Arrow batch holds 10,000 rows)
# holds the pixels of at most this many images, (64, 3, H, W) float32, plus its own input frame.
PREDICT_BATCH = 64


def to_cache_precision(features: torch.Tensor) -> torch.Tensor:
    """Round to float16 and back, exactly as the feature cache stores features."""
    return features.half().float()


def encode_inputs(backbone: Backbone, texts: list[str | None], images: list[np.ndarray | None],
                  max_text_tokens: int, hidden_layers: int = 0) -> FeatureBatch:
    """Raw tweets and preprocessed images ((3, H, W) from ``backbone.preprocess_image``) -> the
    FeatureBatch a model reads, with featurize's preprocessing; with ``hidden_layers`` k > 0, also the
    hidden states entering each tower's last k blocks.

    A None text or image is a missing modality: its features are zeros, as in modality dropout.
    """
    encoded = backbone.tokenize([normalize_tweet(text or "") for text in texts], max_text_tokens)
    blank = backbone.preprocess_image(Image.new("RGB", (32, 32)))  # a missing image's placeholder; zeroed below
    pixels = torch.from_numpy(np.stack([blank if image is None else image for image in images]))
    with torch.inference_mode():
        text = backbone.encode_text(encoded["input_ids"], encoded["attention_mask"], hidden_layers)
        image = backbone.encode_image(pixels, hidden_layers)
    batch = FeatureBatch(
        text_pooled=to_cache_precision(text.pooled.cpu()),
        image_pooled=to_cache_precision(image.pooled.cpu()),
        text_tokens=to_cache_precision(text.tokens.cpu()),
        text_mask=encoded["attention_mask"].bool(),
        image_tokens=to_cache_precision(image.tokens.cpu()),
    )
    if hidden_layers:
        batch.text_hidden = to_cache_precision(text.hidden[hidden_layers - 1].cpu())  # (B, L, D_t)
        batch.image_hidden = to_cache_precision(image.hidden[hidden_layers - 1].cpu())  # (B, M, D_v)
    missing_text = np.array([i for i, text in enumerate(texts) if text is None], dtype=np.int64)
    missing_image = np.array([i for i, image in enumerate(images) if image is None], dtype=np.int64)
    return drop_modality(batch, missing_text, missing_image)


class MscModel(mlflow.pyfunc.PythonModel):
    """The pyfunc. msc/model/pyfunc_entry.py hands an instance to MLflow (model from code)."""

    max_unusable_image_share = MAX_UNUSABLE_IMAGE_SHARE  # load_context reads the model_config's; also set by hand
    rules = ProbabilityRules(CalibrationMap())  # load_context reads head.json's; a model built by hand: the raw softmax

    def load_context(self, context) -> None:
        spec = read_head_spec(context.artifacts["head_config"])
        backbone_ref = context.artifacts.get("backbone") or backbone_reference(spec)
        # The backbone whose features trained the head, or a sentence: a hub id by its recorded commit,
        # a folder (or the bundled copy) by its files' digest (msc/model/provenance.py).
        revision = checked_revision(spec.backbone_identity, backbone_ref, spec.revision,
                                    accepts_change(context.model_config))
        # The runtime whose features trained the head: torch where it runs best (fp16 on a GPU), or
        # onnxruntime on the CPU in the recorded precision (fp32, int8), as featurize ran it.
        onnx = spec.runtime == "onnxruntime"
        if onnx and spec.train.get("top_layers", 0):
            raise UserError(TOP_LAYERS_REFUSED)
        self.backbone = runtime_backbone(backbone_ref, revision, "auto", spec.precision if onnx else "auto", spec.family,
                                         spec.runtime)
        self.labels = tuple(spec.labels)  # the class order of the head's outputs
        # FeatureBatch -> logits: the head, within its own top blocks when k > 0. On the CPU, in fp32,
        # like the head alone; the backbone below runs on its device. The blocks are copied from the
        # fp32 weights, as training copied them (LoRA keeps the copied weights): a backbone loaded in
        # fp16 on a GPU is loaded once more, in fp32 on the CPU, for that.
        source = None
        if spec.train.get("top_layers", 0):  # k > 0: its own copies of the top k blocks (msc/model/top_layers.py)
            source = self.backbone if self.backbone.dtype == torch.float32 else load_backbone(
                backbone_ref, revision, device="cpu", precision="fp32", family=spec.family)
        self.head = build_logged_head(spec, load_file(context.artifacts["head_weights"]), source)
        # Fitted on out-of-fold rows when the version was registered; a trial's model has none (the raw softmax).
        self.rules = spec.rules()
        self.max_text_tokens = spec.max_text_tokens
        # Set by the caller at load time, never by a request: src.predict and in-process code pass
        # model_config={"trusted_input": True}; `mlflow models serve` keeps the logged False.
        config = context.model_config or {}
        self.trusted_input = bool(config.get("trusted_input", False))
        # A trusted batch stops when more than this share of its images could not be used (src.predict
        # passes 1 and checks predict.max_unusable_image_share itself, after printing the counts).
        self.max_unusable_image_share = float(config.get("max_unusable_image_share", self.max_unusable_image_share))
        if not self.trusted_input:
            hide_parser_tracebacks()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """``params`` (MLflow inference params, declared in the signature and type-checked by MLflow):
        ``explain`` adds the columns ``attr_text``, ``attr_image`` and ``driver`` (msc/model/explain.py),
        ``driver_margin`` is the margin in nats that ``driver`` needs; ``coverage`` in (0, 1) adds
        ``label_set`` (0: none), marginal or, with ``class_conditional``, per class."""
        check_columns(model_input)
        explain, sets = explanation_margin(params), self.label_set_request(params)
        if self.trusted_input:
            return self.predict_frame(model_input, read_trusted, explain, sets)
        check_request(model_input, served())  # the row and pixel caps protect a server, not an in-process caller
        try:
            return self.predict_frame(model_input, read_untrusted, explain, sets)
        except MlflowException:
            raise  # a bad request: its sentence names the row and the problem
        except Exception:
            # An untrusted client gets a sentence; the traceback (paths, versions) stays in the server log.
            LOGGER.exception("unexpected error while predicting a request of %d rows", len(model_input))
            raise MlflowException("the model failed on this request with an internal error, logged on the server; "
                                  "retry it, and report it if it persists", error_code=INTERNAL_ERROR) from None

    def label_set_request(self, params: dict | None) -> tuple[float, bool] | None:
        """(coverage, class_conditional) when the request asks for label sets, else None; a coverage outside
        [0, 1), or one asked of a model registered without label sets, is a bad request."""
        params = params or {}
        coverage = params.get("coverage", 0.0)
        if coverage is None or not 0 <= coverage < 1:
            raise MlflowException(f"params: coverage is {coverage!r}; it must be strictly between 0 and 1 (e.g. 0.9), "
                                  "or 0 for no label sets", error_code=INVALID_PARAMETER_VALUE)
        if coverage == 0:
            if params.get("class_conditional"):
                raise MlflowException("params: class_conditional asks for class-conditional label sets, and coverage "
                                      "is 0 (no label sets); send a coverage too (e.g. 0.9)",
                                      error_code=INVALID_PARAMETER_VALUE)
            return None
        if self.rules.label_sets is None:
            raise MlflowException("params: coverage was asked, but this model was registered without conformal label "
                                  "sets; leave coverage out, or use a version registered by this msc (python -m src.tune)",
                                  error_code=INVALID_PARAMETER_VALUE)
        return float(coverage), bool(params.get("class_conditional", False))

    def predict_frame(self, model_input: pd.DataFrame, read, explain_margin: float | None = None,
                      label_sets: tuple[float, bool] | None = None) -> pd.DataFrame:
        """Labels and calibrated probabilities of the rows, read with ``read`` (the trusted or untrusted
        rules); with ``label_sets`` (coverage, class_conditional), each row's label set; with
        ``explain_margin`` (nats), also each row's modality attribution and driver; then what each row used
        and why something was dropped. A bad request when more than ``max_unusable_image_share`` of the
        images sent could not be used."""
        probabilities, attributions, used, notes = [], [], [], []
        for start in range(0, len(model_input), PREDICT_BATCH):
            check_deadline(start, len(model_input), PREDICT_BATCH)  # serving: stop once nobody waits (msc/model/deadline.py)
            chunk = model_input.iloc[start : start + PREDICT_BATCH]
            texts, images, chunk_notes = read(chunk, self.backbone.preprocess_image)
            used += used_modalities(texts, images)
            notes += chunk_notes
            batch = encode_inputs(self.backbone, texts, images, self.max_text_tokens, self.head.hidden_layers)
            check_deadline(start, len(model_input), PREDICT_BATCH, "between the backbone and the head")
            if explain_margin is None:
                with torch.inference_mode():
                    probabilities.append(torch.softmax(self.head(batch), dim=-1).numpy())
            else:
                raw, attr_text, attr_image = modality_attribution(self.head, batch, self.rules)
                probabilities.append(raw)
                attributions.append(np.stack([attr_text, attr_image], axis=1))  # (b, 2)
        raw = np.concatenate(probabilities) if probabilities else np.zeros((0, len(self.labels)))  # (n, C)
        coverage, class_conditional = label_sets or (None, False)
        probs, labels, members = self.rules.predict(raw, coverage, class_conditional)
        out = pd.DataFrame(probs, columns=probability_columns(self.labels), index=model_input.index)
        out.insert(0, "label", [self.labels[i] for i in labels])
        if members is not None:
            out["label_set"] = label_set_names(members, self.labels)
        if explain_margin is not None:
            attributed = np.concatenate(attributions) if attributions else np.zeros((0, 2))
            out["attr_text"], out["attr_image"] = attributed[:, 0], attributed[:, 1]
            out["driver"] = drivers(attributed[:, 0], attributed[:, 1], explain_margin)
        out[USED], out[NOTE] = used, notes
        unusable = unusable_images(out.index, notes)
        sentence = unusable_images_sentence(unusable, images_sent(used, unusable), self.max_unusable_image_share,
                                            'model_config["max_unusable_image_share"]')
        if sentence:
            raise MlflowException(sentence, error_code=INVALID_PARAMETER_VALUE)
        return out


def explanation_margin(params: dict | None) -> float | None:
    """The driver margin when the request asks for explanations, else None. MLflow has checked the
    types against the signature; a margin below 0 is a bad request."""
    params = params or {}
    if not params.get("explain", False):
        return None
    margin = params.get("driver_margin", DRIVER_MARGIN)
    if margin is None or not margin >= 0:
        raise MlflowException(f"params: driver_margin is {margin!r}; it must be a number of nats, 0 or more",
                              error_code=INVALID_PARAMETER_VALUE)
    return float(margin)
