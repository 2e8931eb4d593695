"""model.runtime and model.precision: what each runtime accepts, and head.json's record of them."""

import json

import pytest

from msc.core.errors import UserError
from msc.core.settings import build
from msc.model.config import ModelConfig
from msc.model.spec import head_spec, read_head_spec
from msc.track.logged_model import pip_requirements


def model_section(**values) -> ModelConfig:
    return build(ModelConfig, values, "params.yaml", "model.")


def test_runtime_defaults_to_torch_and_onnxruntime_auto_is_fp32():
    assert model_section().runtime == "torch"
    assert model_section(runtime="onnxruntime").runtime_precision == "fp32"
    assert model_section(runtime="onnxruntime", precision="int8").runtime_precision == "int8"
    assert model_section(precision="bf16").runtime_precision == "bf16"


@pytest.mark.parametrize("values,sentence", [
    ({"runtime": "tensorrt"}, "key 'model.runtime' is 'tensorrt'; it must be one of torch, onnxruntime"),
    ({"precision": "int8"}, "must be one of auto, fp32, fp16, bf16 with model.runtime: torch "
                            r"\(int8 needs model.runtime: onnxruntime\)"),
    ({"runtime": "onnxruntime", "precision": "fp16"}, r"auto, fp32, int8 with model.runtime: onnxruntime "
                                                      r"\(fp16 needs model.runtime: torch\)"),
    ({"runtime": "onnxruntime", "device": "cuda"}, "runs the towers on the CPU; on a GPU keep model.runtime: torch"),
])
def test_each_runtime_refuses_what_it_cannot_run_with_a_sentence(values, sentence):
    with pytest.raises(UserError, match=f"^params.yaml: .*{sentence}"):
        model_section(**values)


def test_head_json_records_the_runtime_and_an_older_one_reads_as_torch(tmp_path):
    spec = head_spec({"fusion": "late", "hidden_dim": 8, "dropout": 0.0}, 128, "b", "main", 77, ("a", "b"),
                     runtime=("onnxruntime", "int8"))
    assert (spec.runtime, spec.precision) == ("onnxruntime", "int8")
    older = {key: value for key, value in spec.to_dict().items() if key not in ("runtime", "precision")}
    (tmp_path / "head.json").write_text(json.dumps({**older, "schema": "head-spec@2"}))
    assert (read_head_spec(tmp_path / "head.json").runtime, read_head_spec(tmp_path / "head.json").precision) == \
        ("torch", "auto")


def test_a_model_over_onnxruntime_features_requires_onnxruntime():
    assert not any(line.startswith("onnxruntime==") for line in pip_requirements())
    assert any(line.startswith("onnxruntime==") for line in pip_requirements("onnxruntime"))
