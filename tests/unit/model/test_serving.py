"""The registered pyfunc: same features as training, self-contained, and served over HTTP."""

import os

import numpy as np
import pytest

from msc.config import with_overrides
from msc.data.dataset import load_dataset
from msc.data.images import open_image
from msc.data.text import decode_text
from msc.model.backbone import load_backbone
from msc.model.pyfunc import encode_inputs
from msc.tune.runner import tune


def test_predict_and_featurize_give_the_same_features(config, cache):
    """The pyfunc's preprocessing, batch padding included, reproduces the cached features."""
    dataset = load_dataset(config.data.source)
    rows = np.array([0, 3, 7, len(dataset.labelled) + 1])  # labelled and test rows
    samples = [dataset.samples[r] for r in rows]
    backbone = load_backbone(config.model.backbone, device="cpu")
    batch = encode_inputs(backbone, [decode_text(s.text_path.read_bytes())[0] for s in samples],
                          [backbone.preprocess_image(open_image(s.image_path)) for s in samples],
                          config.features.max_text_tokens)
    cached = cache.batch(rows, tokens=True)
    np.testing.assert_allclose(batch.text_pooled.numpy(), cached.text_pooled.numpy(), atol=2e-3)
    np.testing.assert_allclose(batch.image_pooled.numpy(), cached.image_pooled.numpy(), atol=2e-3)
    np.testing.assert_allclose(batch.image_tokens.numpy(), cached.image_tokens.numpy(), atol=2e-3)
    length = batch.text_mask.shape[1]
    assert np.array_equal(batch.text_mask.numpy(), cached.text_mask.numpy()[:, :length])
    real = batch.text_mask.numpy()
    np.testing.assert_allclose(batch.text_tokens.numpy()[real], cached.text_tokens.numpy()[:, :length][real], atol=2e-3)


@pytest.mark.integration
def test_head_weights_are_safetensors_and_the_model_has_no_pickle(project, config, tiny_clip):
    import mlflow

    backbone_files = sorted(p.name for p in tiny_clip.iterdir())
    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 1}))
    assert sorted(p.name for p in tiny_clip.iterdir()) == backbone_files, "logging never writes into the backbone"
    local = mlflow.artifacts.download_artifacts("models:/msc@production")
    files = {os.path.relpath(os.path.join(d, f), local) for d, _, fs in os.walk(local) for f in fs}
    assert "artifacts/head.safetensors" in files and "artifacts/head.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))], files
    meta = open(os.path.join(local, "MLmodel")).read()
    assert "model_code_path" in meta, "logged as model from code, not a pickled PythonModel"


@pytest.mark.integration
def test_every_test_sample_gets_a_label_even_without_a_file(project, config, sample_root, capsys):
    import shutil

    import yaml

    from src import predict

    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 2}))
    data = project / "data"
    shutil.copytree(sample_root, data)
    test_guids = [line.split(",")[0] for line in (data / "test_without_label.txt").read_text().splitlines()[1:]]
    (data / "data" / f"{test_guids[0]}.jpg").unlink()  # missing image
    (data / "data" / f"{test_guids[1]}.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # undecodable image
    (data / "data" / f"{test_guids[2]}.txt").unlink()  # missing text
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"root": str(data)}}))
    capsys.readouterr()
    assert predict.main(["--model-uri", "models:/msc@production", "--params", str(params)]) == 0
    lines = (project / "results" / "test_with_label.txt").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == test_guids
    assert all(line.split(",")[1] in {"positive", "neutral", "negative"} for line in lines[1:])
    out, err = capsys.readouterr()
    # The missing and the undecodable image are counted, named and said why (issue 30).
    assert f"2 text only, 1 image only, 0 neither; 2 of the {len(test_guids)} images the posts name could not be used" in out
    assert f"(row {test_guids[0]}: image unusable: " in out and f"; row {test_guids[1]}: image unusable: the file" in out
    assert f"post {test_guids[0]} has no {test_guids[0]}.jpg" in err
    assert f"row {test_guids[1]}: image unusable" in err
    assert f"post {test_guids[2]} has no {test_guids[2]}.txt" in err


def test_a_missing_modality_is_zeros_like_modality_dropout(config):
    from PIL import Image

    backbone = load_backbone(config.model.backbone, device="cpu")
    batch = encode_inputs(backbone, ["so happy", None], [None, backbone.preprocess_image(Image.new("RGB", (40, 40)))], 77)
    assert batch.image_pooled[0].abs().sum() == 0 and batch.image_tokens[0].abs().sum() == 0
    assert batch.text_pooled[1].abs().sum() == 0 and batch.text_tokens[1].abs().sum() == 0
    assert batch.text_pooled[0].abs().sum() > 0 and batch.image_pooled[1].abs().sum() > 0
