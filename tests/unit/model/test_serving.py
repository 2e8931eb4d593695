"""The registered pyfunc: same features as training, self-contained, and served over HTTP."""


import numpy as np

from msc.data.dataset import load_dataset
from msc.data.images import open_image
from msc.data.text import decode_text
from msc.model.backbone import load_backbone
from msc.model.pyfunc import encode_inputs


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






def test_a_missing_modality_is_zeros_like_modality_dropout(config):
    from PIL import Image

    backbone = load_backbone(config.model.backbone, device="cpu")
    batch = encode_inputs(backbone, ["so happy", None], [None, backbone.preprocess_image(Image.new("RGB", (40, 40)))], 77)
    assert batch.image_pooled[0].abs().sum() == 0 and batch.image_tokens[0].abs().sum() == 0
    assert batch.text_pooled[1].abs().sum() == 0 and batch.text_tokens[1].abs().sum() == 0
    assert batch.text_pooled[0].abs().sum() > 0 and batch.image_pooled[1].abs().sum() > 0
