"""Training one fusion head on the feature cache: the one ``train_head`` every caller reuses.

Weighted cross-entropy (class weights from params), AdamW, a per-step cosine schedule, one
augmented view sampled per labelled image per epoch, early stopping and best-checkpoint
selection by ``train.select_metric`` on the validation split (the study optimises the same one).
"""

from __future__ import annotations

import copy
import functools
import math
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from msc.core.errors import UserError
from msc.features.cache import FeatureCache
from msc.model.backbone import Backbone, load_backbone
from msc.model.batch import FeatureBatch, drop_modality
from msc.model.heads import FusionHead, build_head
from msc.model.provenance import identity_commit
from msc.model.top_layers import TopLayersModel
from msc.train.config import TrainConfig
from msc.train.metrics import classification_metrics, scalar_metrics

EVAL_BATCH = 512
# Trials in threads of one process (tune.n_jobs > 1) share torch's global generator; a head is
# seeded and built under this lock, so its initial weights depend on its own seed alone.
INIT_LOCK = threading.Lock()
EpochCallback = Callable[[int, dict[str, float]], None]


@functools.lru_cache(maxsize=2)
def frozen_backbone(name: str, revision: str, family: str | None) -> Backbone:
    """The backbone that featurize ran, in fp32 on the CPU, loaded once per process: trainable top
    layers start as copies of its blocks."""
    return load_backbone(name, revision, device="cpu", precision="fp32", family=family)


def build_model(config: TrainConfig, cache: FeatureCache) -> FusionHead | TopLayersModel:
    """``config.fusion``'s head over the cache's features, within trainable copies of each tower's top
    ``config.top_layers`` blocks when that is above 0."""
    head = build_head(config.fusion, cache.dim, config.hidden_dim, config.dropout, len(cache.label_names))
    if not config.top_layers:
        return head
    if config.top_layers > cache.top_layers:
        raise UserError(f"train.top_layers is {config.top_layers}, but the feature cache '{cache.folder}' holds the "
                        f"hidden states of the last {cache.top_layers} blocks (features.top_layers); raise "
                        "features.top_layers and run `python -m src.featurize`")
    settings = cache.manifest.preprocessing
    # The commit that featurize loaded, not what model.revision names now: the copied blocks must be
    # the ones that computed the cached hidden states.
    revision = identity_commit(cache.manifest.backbone_identity) or settings["model.revision"]
    backbone = frozen_backbone(settings["model.backbone"], revision, settings.get("model.family"))
    return TopLayersModel.from_backbone(backbone, config.top_layers, config.top_layers_adapter, config.lora_rank, head)


def optimizer_for(model: FusionHead | TopLayersModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over every trainable parameter; the top blocks' at ``lr * top_layers_lr_scale``, since
    pretrained weights need smaller steps than a head trained from scratch."""
    if not config.top_layers:
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    tops = [p for top in (model.text_top, model.image_top) for p in top.parameters() if p.requires_grad]
    groups = [{"params": list(model.head.parameters())},
              {"params": tops, "lr": config.lr * config.top_layers_lr_scale}]
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class TrainResult:
    head: FusionHead | TopLayersModel  # weights of the best epoch, in eval mode; with its top layers when k > 0
    history: list[dict[str, float]]  # one dict per epoch: train_* and val_* scalars
    best_epoch: int  # 1-based, the kept epoch: the first with the highest select_metric
    val_scores: dict  # classification_metrics at the kept epoch, confusion included

    def score(self, select_metric: str) -> float:
        """The kept epoch's ``select_metric`` (``val_<key>``): the trial's objective."""
        return self.val_scores[select_metric.removeprefix("val_")]


def class_weights(labels: np.ndarray, power: float, factors: list[float]) -> torch.Tensor:
    """(C,) loss weights: (inverse class frequency) ** power, times each class's factor
    (``TrainConfig.class_factors``: class_boost, neutral_boost), for C = len(factors) classes.

    Normalised to mean 1, so the loss scale, and with it the learning rate, stays comparable.
    """
    classes = len(factors)
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weights = (counts.sum() / (classes * np.maximum(counts, 1))) ** power * np.asarray(factors)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def eval_batches(head: FusionHead | TopLayersModel, cache: FeatureCache, rows: np.ndarray) -> Iterator[FeatureBatch]:
    """``rows``' clean views in batches of EVAL_BATCH, with what ``head`` reads; ``head`` is put in
    eval mode on the cache's device."""
    head.eval().to(cache.device)
    for i in range(0, len(rows), EVAL_BATCH):
        yield cache.batch(rows[i : i + EVAL_BATCH], tokens=head.uses_tokens, hidden_layers=head.hidden_layers)


@torch.no_grad()
def predict_proba(head: FusionHead, cache: FeatureCache, rows: np.ndarray) -> np.ndarray:
    """Class probabilities (n, C) of ``rows`` on their clean views, in fp32 on the cache's device."""
    out = [torch.softmax(head(batch), dim=-1) for batch in eval_batches(head, cache, rows)]
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, len(cache.label_names)), dtype=np.float32)


def evaluate(head: FusionHead, cache: FeatureCache, rows: np.ndarray, weights: torch.Tensor) -> dict:
    """classification_metrics of ``rows`` plus their weighted cross-entropy ``loss``."""
    probs = predict_proba(head, cache, rows)
    targets = torch.from_numpy(cache.labels[rows])
    scores = classification_metrics(cache.labels[rows], probs.argmax(1), cache.label_names)
    scores["loss"] = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), targets, weight=weights))
    return scores


def training_autocast(precision: str, head: FusionHead, device: torch.device) -> tuple[torch.autocast,
                                                                                      torch.amp.GradScaler]:
    """The autocast context for training steps and its gradient scaler (a pass-through unless fp16);
    evaluation and prediction always run in fp32. Weights stay fp32.

    ``auto`` on a GPU: bf16 where the GPU supports it, else fp16, whose small range needs the
    scaler. On a CPU: bf16 for the token heads (early, cross_attention) where bf16 is native
    (AVX512-BF16 or AMX): their attention layers are compute-bound, and bf16 cuts an epoch by about
    a third there (BENCHMARKS.md), and for trainable top blocks. The pooled heads are too small to gain.
    """
    cuda = device.type == "cuda"
    if precision == "auto":
        if cuda:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
            compute_bound = head.uses_tokens or head.hidden_layers  # attention layers: the token heads, top blocks
            precision = "bf16" if compute_bound and native else "fp32"
    if precision == "fp16" and not cuda:
        raise UserError("train.precision fp16 needs a GPU (train.device cuda); use bf16 or fp32 on the CPU")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")
    return autocast, torch.amp.GradScaler(device.type, enabled=precision == "fp16")


@dataclass
class Optimisation:
    """What one training step uses besides the head and the batch."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    autocast: torch.autocast
    scaler: torch.amp.GradScaler
    weights: torch.Tensor  # (C,) class weights of the loss, on the head's device


def train_epoch(head: FusionHead, cache: FeatureCache, order: np.ndarray, config: TrainConfig, rng: np.random.Generator,
                step: Optimisation, labels: torch.Tensor) -> dict:
    """One pass over the training rows in ``order``; returns the epoch's training scores and mean loss.

    ``labels`` (N_lab,) lives on the cache's device. ``rng`` draws, in this order, the image views,
    the text views, then per batch the modality dropout: a seed reproduces an epoch exactly.
    """
    head.train()
    device = cache.device
    # One view per image per epoch: 0 = clean, 1..K = cached augmentations.
    augmented = cache.augment_views and config.use_augmented_views
    views = rng.integers(0, cache.augment_views + 1, size=len(order)) if augmented else None
    texts_augmented = cache.text_augment_views and config.use_text_views
    text_views = rng.integers(0, cache.text_augment_views + 1, size=len(order)) if texts_augmented else None
    losses, predictions = [], []
    for start in range(0, len(order), config.batch_size):
        rows = order[start : start + config.batch_size]
        window = slice(start, start + config.batch_size)
        batch = cache.batch(rows, None if views is None else views[window], tokens=head.uses_tokens,
                            text_views=None if text_views is None else text_views[window],
                            hidden_layers=head.hidden_layers)
        # Modality dropout: a few samples lose one modality, half their text, half their image.
        dropped = np.flatnonzero(rng.random(len(rows)) < config.modality_dropout)
        lose_text = rng.random(len(dropped)) < 0.5
        drop_modality(batch, dropped[lose_text], dropped[~lose_text])
        with step.autocast:
            logits = head(batch).float()  # (B, C)
        loss = F.cross_entropy(logits, labels[torch.from_numpy(rows).to(device)], weight=step.weights)
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()
        step.scaler.step(step.optimizer)
        step.scaler.update()
        step.scheduler.step()
        losses.append((loss.detach(), len(rows)))  # read once per epoch: no device sync per step
        predictions.append(logits.argmax(1))
    scores = classification_metrics(cache.labels[order], torch.cat(predictions).cpu().numpy(), cache.label_names)
    scores["loss"] = sum(loss.item() * n for loss, n in losses) / len(order)
    return scores


def train_head(
    cache: FeatureCache,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    stop_at: int | None = None,
) -> TrainResult:
    """Train ``config.fusion`` on ``train_rows``; keep the epoch with the best ``config.select_metric``
    on ``val_rows``, and stop after ``config.patience`` epochs without a better one.

    ``on_epoch(epoch, scalars)`` runs after each epoch; raising from it (an Optuna prune)
    stops training. ``stop_at`` (an epoch): train to it and keep it, whatever ``val_rows`` score, so
    that they choose nothing (msc/train/crossfit.py: out-of-fold rows for calibration).
    """
    assert stop_at is None or 1 <= stop_at <= config.epochs, f"stop_at {stop_at} is outside 1..{config.epochs}"
    device = cache.device
    with INIT_LOCK:  # the trial's own seed decides its initial weights, whatever other threads draw
        torch.manual_seed(config.seed)
        head = build_model(config, cache).to(device)
    rng = np.random.default_rng(config.seed)  # the trial's own generator: batch order, views, modality dropout
    weights = class_weights(cache.labels[train_rows], config.class_weight_power, config.class_factors(cache.label_names))
    optimizer = optimizer_for(head, config)
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    step = Optimisation(optimizer, scheduler, *training_autocast(config.precision, head, device), weights.to(device))
    labels = torch.from_numpy(cache.labels).to(device)  # (N_lab,), sliced per batch on the device
    history: list[dict[str, float]] = []
    best_value, best_epoch, best_state, best_scores = -math.inf, 0, None, {}
    for epoch in range(1, config.epochs + 1):
        train_scores = train_epoch(head, cache, rng.permutation(train_rows), config, rng, step, labels)
        val_scores = evaluate(head, cache, val_rows, weights)
        scalars = {**scalar_metrics(train_scores, "train_"), **scalar_metrics(val_scores, "val_")}
        history.append(scalars)
        if (scalars[config.select_metric] > best_value) if stop_at is None else epoch == stop_at:
            best_value, best_epoch, best_scores = scalars[config.select_metric], epoch, val_scores
            best_state = copy.deepcopy(head.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, scalars)
        if epoch == stop_at or (stop_at is None and epoch - best_epoch >= config.patience):
            break
    head.load_state_dict(best_state)
    head.eval()
    return TrainResult(head, history, best_epoch, best_scores)
