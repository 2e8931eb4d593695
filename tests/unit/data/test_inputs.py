"""Unusual but decodable inputs are read the same way on every run."""

import base64
import codecs
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from msc.data.images import MAX_ASPECT, open_image, processed_pixels
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


@pytest.mark.parametrize("width, height", [(20000, 1), (1, 20000), (200000, 1), (1, 200000), (39999, 1000)])
def test_a_thin_image_is_cropped_to_a_bounded_shape_before_resizing(tiny_clip, width, height):
    """CLIP's processor scales the shorter side to 224 before it crops: 20000x1 would become 4,480,000x224
    (gigabytes). open_image, the one path of featurize, predict and serve, keeps the centre at most 4:1."""
    from msc.model.backbone import load_backbone

    thin = open_image(encoded(Image.new("1", (width, height), 1), "PNG"))  # the 84-byte PNG of the report first
    assert max(thin.size) <= MAX_ASPECT * min(thin.size) and thin.mode == "RGB"
    assert processed_pixels(*thin.size) <= 224 * 224 * MAX_ASPECT
    pixels = load_backbone(str(tiny_clip), device="cpu", precision="fp32").preprocess_image(thin)
    assert pixels.shape[0] == 3 and pixels.shape[1] == pixels.shape[2]


def test_a_banner_keeps_its_shape_and_its_centre_square():
    """A 3:1 banner is left as it is; a 10:1 strip keeps the centre, all CLIP's centre crop keeps."""
    banner = Image.new("RGB", (1500, 500), (10, 20, 30))
    assert open_image(encoded(banner, "PNG")).size == (1500, 500)
    strip = np.zeros((100, 1000, 3), dtype=np.uint8)
    strip[:, 450:550] = 255  # a white centre square
    kept = np.asarray(open_image(encoded(Image.fromarray(strip), "PNG")))
    assert kept.shape == (100, 400, 3) and (kept[:, 150:250] == 255).all() and (kept[:, :150] == 0).all()


def ramp(mode: str, top: float) -> Image.Image:
    """A horizontal grey ramp from 0 to ``top`` in ``mode``, 1024x256."""
    values = np.tile(np.linspace(0, top, 1024), (256, 1))
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    return Image.fromarray(values.astype(dtype))


@pytest.mark.parametrize("mode, top, fmt", [("I;16", 65535, "PNG"), ("I;16", 4095, "PNG"), ("I", 65535, "TIFF"),
                                            ("F", 1.0, "TIFF")])
def test_a_high_bit_depth_ramp_keeps_its_grey_levels(mode, top, fmt):
    """convert("RGB") clips every value above 255: a 16-bit ramp came out 99.6 % white."""
    image = open_image(encoded(ramp(mode, top), fmt))
    grey = np.asarray(image)[0, :, 0].astype(int)
    expected = np.round(np.linspace(0, top, 1024) * 255 / (65535 if mode != "F" else 1.0)).astype(int)
    assert image.mode == "RGB" and np.abs(grey - expected).max() <= 1
    assert (grey == 255).mean() < 0.01 and len(np.unique(grey)) >= expected.max() - 1


def test_an_unexpected_error_reaches_an_untrusted_client_as_a_sentence(caplog):
    """The trace (venv path, model folder, Python version) goes to the server log, never to the client."""
    from mlflow.exceptions import MlflowException

    from msc.model.pyfunc import MscModel

    model = MscModel()
    model.trusted_input = False

    def fail(*args):
        raise RuntimeError("/secret/venv/lib/python3.11/site-packages: boom")

    model.predict_frame = fail
    image = base64.b64encode(encoded(Image.new("RGB", (8, 8)), "PNG")).decode()
    with pytest.raises(MlflowException) as raised:
        model.predict(None, pd.DataFrame({"text": ["hi"], "image": [image]}))
    assert "internal error, logged on the server" in raised.value.message and "secret" not in raised.value.message
    assert raised.value.get_http_status_code() == 500 and "stack_trace" not in raised.value.serialize_as_json()
    assert "boom" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize("codec, how", [("utf-16", "utf-16"), ("utf-16-le", "utf-16"), ("utf-16-be", "utf-16"),
                                        ("utf-32", "utf-32"), ("utf-32-le", "utf-32"), ("utf-32-be", "utf-32"),
                                        ("utf-8-sig", "utf-8")])
def test_a_text_with_a_byte_order_mark_is_read_in_the_codec_it_names(codec, how):
    """UTF-16 with a BOM was cached as mojibake: its bytes are valid GB18030 or cp1252 too."""
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE,
           "utf-32-be": codecs.BOM_UTF32_BE}.get(codec, b"")  # the other codecs write their own
    text = "Très déçu 😞 #fail 不好"
    assert decode_text(bom + text.encode(codec)) == (text, how)


def test_a_text_after_its_byte_order_mark_that_does_not_decode_is_flagged():
    decoded, how = decode_text(codecs.BOM_UTF16_LE + "sad".encode("utf-16-le") + b"\x00")  # one byte too many
    assert decoded.startswith("sad") and how == "utf-16-replaced"
