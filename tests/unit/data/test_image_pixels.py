"""Images whose pixel values have no grey level (NaN, infinity) or an unusual range (floats above
2**32): each reader names the image, or scales it; none fails without a sentence (issue 33, kind 1)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from PIL import Image

from msc.core.errors import UserError
from msc.data.dataset import load_dataset
from msc.data.images import PixelValueError, image_problem, open_image
from msc.data.posts import DataSource
from msc.features.screen import screen_samples


def float_tiff(path, values: np.ndarray):
    Image.fromarray(values.astype(np.float32), mode="F").save(path, format="TIFF")
    return path


def test_a_nan_pixel_is_a_sentence_not_a_stop_iteration(tmp_path):
    values = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    values[3, 5] = np.nan
    path = float_tiff(tmp_path / "nan.tif", values)
    with pytest.raises(PixelValueError, match="1 of its 4096 pixels are not finite"):
        open_image(path)
    assert "not finite" in image_problem(path)


def test_an_infinite_pixel_in_a_32_bit_integer_sibling_format_is_named_too(tmp_path):
    values = np.full((16, 16), np.inf)
    path = float_tiff(tmp_path / "inf.tif", values)
    with pytest.raises(PixelValueError, match="256 of its 256 pixels"):
        open_image(path.read_bytes())  # bytes, as the served model and predict read them


def test_float_values_above_two_to_the_32_are_scaled_by_their_largest_value(tmp_path):
    values = np.zeros((8, 8))
    values[0, 0], values[1, 1] = 5e9, 2.5e9
    image = open_image(float_tiff(tmp_path / "huge.tif", values))
    grey = np.asarray(image)[..., 0]
    assert grey[0, 0] == 255 and grey[1, 1] == 128 and grey[2, 2] == 0
    assert image_problem(tmp_path / "huge.tif") is None


def test_featurize_screen_names_the_image_with_nan_pixels(small_sample_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_sample_root, root)
    dataset = load_dataset(DataSource(root=root), require_labelled_files=False)
    victim = dataset.labelled[0]
    values = np.ones((32, 32))
    values[0, 0] = np.nan
    Image.fromarray(values.astype(np.float32), mode="F").save(victim.image_path, format="TIFF")  # named .jpg
    with pytest.raises(UserError, match=rf"{victim.guid} \(.*{victim.image_path.name}: 1 of its 1024 pixels are not finite"):
        screen_samples(dataset, "error")
    screening = screen_samples(dataset, "skip")
    assert [item["guid"] for item in screening.skipped] == [victim.guid]
    test_victim = dataclasses.replace(victim, label=None)
    with_test = dataclasses.replace(dataset, labelled=dataset.labelled[1:], test=[test_victim, *dataset.test])
    assert victim.guid in screen_samples(with_test, "skip").blank_image


def test_a_served_request_with_nan_pixels_is_a_400_naming_the_row(tmp_path):
    import base64

    import pandas as pd
    from mlflow.exceptions import MlflowException

    from msc.model.inputs import check_pixel_budget, decode_base64_image

    values = np.ones((16, 16))
    values[2, 2] = np.nan
    encoded = base64.b64encode(float_tiff(tmp_path / "nan.tif", values).read_bytes()).decode()
    check_pixel_budget(pd.DataFrame({"text": ["a"], "image": [encoded]}))  # the header is fine
    with pytest.raises(MlflowException, match="row 7: image cannot be used: 1 of its 256 pixels are not finite") as caught:
        decode_base64_image(encoded, 7)
    assert caught.value.get_http_status_code() == 400
