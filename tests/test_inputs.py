"""Unusual but decodable inputs are read the same way on every run."""

import io

import numpy as np
import pytest
from PIL import Image

from msc.data.images import open_image
from msc.data.text import decode_text, normalize_tweet


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, raw",
    [
        ("png bytes named .jpg", encoded(Image.new("RGB", (30, 20), (200, 10, 10)), "PNG")),
        ("gif bytes named .jpg", encoded(Image.new("P", (30, 20)), "GIF")),
        ("cmyk jpeg", encoded(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG")),
        ("grayscale", encoded(Image.new("L", (30, 20), 128), "JPEG")),
        ("palette png", encoded(Image.new("RGB", (30, 20), (10, 200, 10)).convert("P"), "PNG")),
        ("1x1", encoded(Image.new("RGB", (1, 1), (1, 2, 3)), "JPEG")),
    ],
)
def test_decodable_images_become_rgb(tmp_path, name, raw):
    path = tmp_path / "x.jpg"
    path.write_bytes(raw)
    image = open_image(path)
    assert image.mode == "RGB" and image.size[0] >= 1, name


def test_transparency_is_composited_onto_white(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(encoded(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"))
    assert open_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "x.jpg"
    path.write_bytes(encoded(image, "JPEG", exif=exif.tobytes()))
    assert open_image(path).size == (20, 40)


def test_a_large_jpeg_is_decoded_at_reduced_size(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(encoded(Image.new("RGB", (7000, 5000), (30, 30, 30)), "JPEG", quality=50))
    image = open_image(path)
    assert image.mode == "RGB" and 448 <= min(image.size) < 5000  # JPEG draft mode, not 35 Mpx in memory


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"", ""),
        ("😀😀🙏".encode(), "😀 😀 🙏"),
        (b"\xef\xbb\xbfhello there", "hello there"),
        (b"line one\r\nline two\r\n", "line one line two"),
    ],
)
def test_edge_case_texts(raw, expected):
    text, _ = decode_text(raw)
    assert normalize_tweet(text) == expected


def test_long_and_invalid_texts_are_deterministic():
    long_text = ("word " * 2000).encode()  # 10,000 characters
    first = normalize_tweet(decode_text(long_text)[0])
    assert first == normalize_tweet(decode_text(long_text)[0]) and len(first) <= 2000
    invalid = bytes(np.random.default_rng(0).integers(128, 256, size=300, dtype=np.uint8))
    assert decode_text(invalid) == decode_text(invalid)
