"""``head.json``, the head spec: what a logged model needs to rebuild its head and find its backbone.

The weights go beside it as ``head.safetensors`` (never pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from safetensors.torch import save_file

from msc.core.handoff import HandOff, read_handoff, write_handoff
from msc.core.paths import local_folder
from msc.model.calibrated import ProbabilityRules
from msc.model.heads import build_head
from msc.model.top_layers import TopLayersModel

if TYPE_CHECKING:
    import torch

    from msc.model.backbone import Backbone

HEAD_SPEC = "head.json"
HEAD_WEIGHTS = "head.safetensors"


@dataclass(frozen=True)
class HeadSpec(HandOff):
    NAME: ClassVar[str] = "head-spec"
    VERSION: ClassVar[int] = 4  # 2: backbone_identity; 3: probability_rules; 4: runtime, precision
    WHAT: ClassVar[str] = "head spec"
    WRITTEN_BY: ClassVar[str] = "`python -m src.tune` (it logs every trial's model)"
    # Logged before identities: loads, unchecked. Logged before probability rules: the temperature alone
    # and the plain argmax, no label sets (ProbabilityRules.from_dict({}, temperature)). Logged before
    # runtimes: its features came from torch.
    UPGRADES: ClassVar[dict] = {
        1: {"backbone_identity": None, "probability_rules": None, "runtime": "torch", "precision": "auto"},
        2: {"probability_rules": None, "runtime": "torch", "precision": "auto"},
        3: {"runtime": "torch", "precision": "auto"}}

    fusion: str  # a name in msc.model.heads.HEADS
    dim: int  # P, the width of the features the head reads
    hidden_dim: int
    dropout: float
    backbone: str  # model.backbone as written: a hub id, or a folder resolved against the loading project
    backbone_folder: str | None  # where that folder was on the training machine, if it was one
    revision: str  # model.revision as written ("main"); what it named then is in backbone_identity
    # hub:<id>@<commit> or folder:<sha256> of the backbone whose features trained the head (the cache's,
    # msc/model/provenance.py): what loading checks. None in a head logged before identities were recorded.
    backbone_identity: str | None
    max_text_tokens: int
    labels: list  # class order of the head's outputs
    train: dict  # the whole train section it was trained with
    temperature: float = 1.0  # fitted at registration (msc/tune/registration.py); 1 (none) for a trial's model
    family: str | None = None  # model.family as set: None reads it from the backbone's config.json
    # The calibration map, decision rule and label-set scores fitted on out-of-fold rows at registration
    # (ProbabilityRules.to_dict(), msc/model/calibrated.py); None for a trial's model or an older version.
    probability_rules: dict | None = None
    # model.runtime and model.precision of the features that trained the head: the pyfunc computes a new
    # post's features with onnxruntime in that precision when the runtime was onnxruntime (torch: as it loads)
    runtime: str = "torch"
    precision: str = "auto"

    def rules(self) -> ProbabilityRules:
        """What every entry point applies to the head's raw softmax: the stored rules, or for a spec without
        them the temperature alone with the plain argmax."""
        return ProbabilityRules.from_dict(self.probability_rules or {}, self.temperature)


def head_spec(train: dict, dim: int, backbone: str, revision: str, max_text_tokens: int, labels: tuple[str, ...],
              family: str | None = None, identity: str | None = None, runtime: tuple[str, str] = ("torch", "auto")
              ) -> HeadSpec:
    """The spec of a head trained with the ``train`` section (a dict of TrainConfig) over ``backbone``
    (whose features came from the backbone of ``identity`` under ``runtime``: model.runtime and
    model.precision), whose outputs are the classes ``labels``."""
    folder = local_folder(backbone)
    return HeadSpec(fusion=train["fusion"], dim=dim, hidden_dim=train["hidden_dim"], dropout=train["dropout"],
                    backbone=backbone, backbone_folder=str(folder.resolve()) if folder else None, revision=revision,
                    backbone_identity=identity,
                    max_text_tokens=max_text_tokens, labels=list(labels), train=train, family=family,
                    runtime=runtime[0], precision=runtime[1])


def write_head(model, spec: HeadSpec, folder: Path) -> dict[str, str]:
    """Save the weights that ``model`` (a FusionHead or TopLayersModel) keeps, and the spec, into ``folder``;
    returns the pyfunc artifacts mapping."""
    save_file({k: v.detach().contiguous() for k, v in model.saved_state().items()}, str(folder / HEAD_WEIGHTS))
    write_handoff(folder / HEAD_SPEC, spec)
    return {"head_weights": str(folder / HEAD_WEIGHTS), "head_config": str(folder / HEAD_SPEC)}


def build_logged_head(spec: HeadSpec, weights: dict[str, "torch.Tensor"], backbone: "Backbone | None" = None):
    """The head that ``spec`` and its saved ``weights`` describe, on the CPU in fp32, in eval mode: the
    fusion head alone, or with ``train.top_layers`` k > 0 within copies of the top k blocks of each
    tower of ``backbone`` (fp32; LoRA keeps the copied weights, so only k > 0 needs a backbone)."""
    head = build_head(spec.fusion, spec.dim, spec.hidden_dim, spec.dropout, len(spec.labels))
    top_layers = spec.train.get("top_layers", 0)
    if top_layers:
        if backbone is None:
            raise ValueError(f"this head trains {top_layers} top blocks per tower: it needs the backbone they are copied from")
        head = TopLayersModel.from_backbone(backbone, top_layers, spec.train["top_layers_adapter"], spec.train["lora_rank"],
                                            head).cpu()
    head.load_saved_state(weights)
    return head.eval()


def read_head_spec(path: str | Path) -> HeadSpec:
    return read_handoff(HeadSpec, path)


def with_calibration_spec(path: Path, temperature: float, rules: dict | None) -> None:
    """Rewrite the spec at ``path`` with the fitted ``temperature`` and ``rules`` (ProbabilityRules.to_dict())."""
    write_handoff(path, replace(read_head_spec(path), temperature=temperature, probability_rules=rules))


def backbone_reference(spec: HeadSpec) -> str:
    """The backbone a logged head names: ``model.backbone`` as written (a hub id, or a folder that
    resolves against the loading project, so nothing of one machine's paths leaks to another),
    else the folder where it was on the machine that trained the head, when that exists here."""
    if local_folder(spec.backbone) is None and spec.backbone_folder and Path(spec.backbone_folder).is_dir():
        return spec.backbone_folder
    return spec.backbone


