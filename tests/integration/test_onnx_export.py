"""ONNX graphs of the heads over token features match torch in fp32 at any text length (integration:
torch.export takes about 20 s a head; the pooled heads' are tests/unit/model/test_onnx_export.py)."""

import pytest

from msc.model.heads import HEADS
from tests.unit.model.test_onnx_export import TOKEN_HEADS, check_head_at_any_text_length


@pytest.mark.parametrize("fusion", [name for name in HEADS if name in TOKEN_HEADS])
def test_every_head_runs_at_any_text_length_and_matches_torch(fusion, tmp_path):
    check_head_at_any_text_length(fusion, tmp_path)
