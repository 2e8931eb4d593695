"""Empty or header-only inputs (issue 23, item 7): a sentence, or an empty but valid output."""

import shutil
from types import SimpleNamespace

import pytest

from msc.core.errors import UserError
from msc.core.labels import COURSE_LABELS
from msc.data.posts import DataSource
from msc.track.inference import predict_test_set
from src.predict import distribution_table, write_labels
from tests.helpers import cache_sections


class NeverCalled:
    def unwrap_python_model(self):
        return SimpleNamespace(labels=COURSE_LABELS)

    def predict(self, frame):
        raise AssertionError("nothing to label: the model must not be called (MLflow's schema check fails on 0 rows)")


@pytest.mark.parametrize("header", ["guid,tag\n", "\ufeffguid,tag\r\n\r\n"])
def test_a_header_only_test_file_gives_a_header_only_output(sample_root, tmp_path, header):
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    (data / "test_without_label.txt").write_text(header, encoding="utf-8")
    labels = predict_test_set(NeverCalled(), DataSource(data))
    assert len(labels) == 0 and list(labels.columns) == ["guid", "tag", "p_positive", "p_neutral", "p_negative", "used",
                                                     "input_note"]
    out = tmp_path / "test_with_label.txt"
    write_labels(labels, out)
    assert out.read_text() == "guid,tag\n"
    assert distribution_table(labels["tag"], COURSE_LABELS)[1] == {"positive": 0, "neutral": 0, "negative": 0}


def test_an_empty_label_file_is_a_sentence(sample_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    (data / "test_without_label.txt").write_text("")
    with pytest.raises(UserError, match="test_without_label.txt is empty; expected the header 'guid,tag'"):
        predict_test_set(NeverCalled(), DataSource(data))


def test_featurize_refuses_a_header_only_train_file_and_takes_a_header_only_test_file(private_config):
    from pathlib import Path

    from msc.features.build import featurize

    root = Path(private_config.data.root)
    train = (root / "train.txt").read_text()
    (root / "train.txt").write_text("guid,tag\n")
    with pytest.raises(UserError, match="train.txt has no labelled samples"):
        featurize(*cache_sections(private_config))
    (root / "train.txt").write_text(train)
    (root / "test_without_label.txt").write_text("guid,tag\n")
    cache, built = featurize(*cache_sections(private_config))
    assert built and len(cache.guids) == cache.n_labelled == len(train.splitlines()) - 1


def test_featurize_and_predict_take_a_thin_banner_in_the_data_the_same_way(private_config):
    """Issue 23, item 1, in the data rather than a request: a 20000x1 image goes through featurize's
    path and the prediction path alike, to the same features, without a 4,480,000-pixel resize."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from msc.data.dataset import load_dataset
    from msc.data.images import open_image
    from msc.data.text import decode_text
    from msc.features.build import featurize
    from msc.model.backbone import load_backbone
    from msc.model.pyfunc import encode_inputs

    sample = load_dataset(private_config.data.source).labelled[0]
    Image.new("RGB", (20000, 1), (200, 40, 40)).save(Path(sample.image_path), format="PNG")  # a PNG named .jpg
    cache, _ = featurize(*cache_sections(private_config))
    backbone = load_backbone(private_config.model.backbone, device="cpu")
    served = encode_inputs(backbone, [decode_text(sample.text_path.read_bytes())[0]],
                           [backbone.preprocess_image(open_image(sample.image_path))], 77)
    np.testing.assert_allclose(served.image_pooled.numpy()[0], cache.array("image_pooled")[0], atol=2e-3)
