import numpy as np
from PIL import Image, ImageFilter

from msc.data.images import sharpness, short_side


def test_sharpness_falls_with_blur_and_short_side_reads_the_header(tmp_path):
    rng = np.random.default_rng(0)
    detailed = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    blurred = detailed.filter(ImageFilter.GaussianBlur(4))
    assert sharpness(blurred) < sharpness(detailed) / 10
    assert sharpness(Image.new("RGB", (50, 80), (120, 30, 30))) == 0.0
    path = tmp_path / "small.jpg"
    detailed.resize((90, 60)).save(path)
    assert short_side(path) == 60
