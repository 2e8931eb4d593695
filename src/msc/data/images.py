"""Reading images the same way everywhere (featurize, predict, serve), and cached augmentations.

torchvision has no CPU wheel here, so the augmentations are written with PIL.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

DRAFT_SIZE = (448, 448)  # JPEG decode at >= 2x CLIP's 224 px: cheaper, and enough for a 0.6 crop
# The longest side may be at most this many times the shortest. CLIP's processor scales the shorter
# side to 224 before its centre crop, so a 20000x1 image would become 4,480,000x224 pixels (gigabytes)
# on the way to a 224x224 crop. Cropping the longer side to 4x the shorter first bounds that at
# 896x224 and keeps the centre square, all the centre crop keeps; a 3:1 banner is left as it is.
MAX_ASPECT = 4
# Modes with more than 8 bits per sample, and the largest value each can hold. convert("RGB") clips
# them at 255, whitening a 16-bit image; they are scaled to 8 bits instead (``to_8_bit``).
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": None, "F": None}


def crop_to_aspect(image: Image.Image, max_aspect: int = MAX_ASPECT) -> Image.Image:
    """The centred part of ``image`` whose longer side is at most ``max_aspect`` times its shorter."""
    width, height = image.size
    short = min(width, height)
    if max(width, height) <= max_aspect * short:
        return image
    keep_w, keep_h = min(width, max_aspect * short), min(height, max_aspect * short)
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    return image.crop((left, top, left + keep_w, top + keep_h))


def processed_pixels(width: int, height: int, side: int = 224) -> int:
    """Pixels of a ``width`` x ``height`` image once cropped to ``MAX_ASPECT`` and its shorter side
    scaled to ``side``, as CLIP's processor does before its centre crop: what resizing it costs."""
    aspect = min(max(width, height) / max(1, min(width, height)), MAX_ASPECT)
    return round(side * side * aspect)


class PixelValueError(ValueError):
    """An image whose pixel values have no grey level: NaN or infinite floats."""


def to_8_bit(image: Image.Image) -> Image.Image:
    """An 8-bit grayscale ("L") image with the grey levels of a wider one; other modes as they are.

    16-bit modes are scaled by their full range (65535 -> 255). Modes "I" (32-bit integers) and "F"
    (floats) say nothing of their range, so the smallest usual one that holds the image's largest
    value is taken: 1 (floats in [0, 1]), 255, 65535 or 2**32 - 1, and above that the largest value
    itself. A NaN or infinite pixel has no grey level: ``PixelValueError``, which every reader turns
    into a sentence naming the image (featurize's screen, predict, and a 400 for a served request).
    """
    if image.mode not in WIDE_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)  # (H, W)
    if not np.isfinite(values).all():
        raise PixelValueError(f"{int((~np.isfinite(values)).sum())} of its {values.size} pixels are not finite "
                              "numbers (NaN or infinity); save it with finite values, or as an 8-bit image")
    peak = values.max(initial=0.0)
    top = WIDE_MODES[image.mode] or next((limit for limit in (1.0, 255.0, 65535.0, 2.0**32 - 1) if peak <= limit), peak)
    return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8))  # mode L


def open_image(source: str | bytes | io.BytesIO) -> Image.Image:
    """Decode a path or bytes into an upright RGB image of bounded aspect ratio (``MAX_ASPECT``).

    The format comes from the content, not the file name (PNG or GIF bytes named .jpg work);
    EXIF rotation is applied; CMYK, grayscale and palette images are converted, images with more
    than 8 bits per sample are scaled to 8, and transparency is composited onto white.
    """
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.draft("RGB", DRAFT_SIZE)  # only JPEG honours it; a no-op otherwise
    image = to_8_bit(crop_to_aspect(ImageOps.exif_transpose(image)))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


QUALITY_SIDE = 224  # sharpness is measured at CLIP's input size, so big and small images compare


def sharpness(image: Image.Image) -> float:
    """Variance of the Laplacian of the grayscale image, its shorter side scaled to 224 px: low for a
    blurry or flat image (the usual blur measure)."""
    gray = ImageOps.grayscale(image)
    scale = QUALITY_SIDE / max(1, min(gray.size))
    gray = gray.resize((max(3, round(gray.width * scale)), max(3, round(gray.height * scale))))
    g = np.asarray(gray, dtype=np.float32)  # (H, W)
    laplacian = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(laplacian.var())


def short_side(path) -> int:
    """The shorter side of the image file in pixels, from its header (no decoding)."""
    with Image.open(path) as image:
        return min(image.size)


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """One augmented view: random resized crop, horizontal flip and colour jitter.

    The crop keeps 60-100% of the area with aspect 3/4-4/3; the CLIP processor resizes it
    afterwards. Jitter changes brightness, contrast and saturation by up to 20%, never hue,
    since colour carries sentiment.
    """
    width, height = image.size
    for _ in range(10):
        area = width * height * rng.uniform(0.6, 1.0)
        aspect = rng.uniform(3 / 4, 4 / 3)
        crop_w = round((area * aspect) ** 0.5)
        crop_h = round((area / aspect) ** 0.5)
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left = rng.randint(0, width - crop_w)
            top = rng.randint(0, height - crop_h)
            image = image.crop((left, top, left + crop_w, top + crop_h))
            break
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(rng.uniform(0.8, 1.2))
    return image


def image_problem(path) -> str | None:
    """Why ``path`` cannot be used as an image, or None when its structure checks out.

    ``verify()`` reads the file without decoding pixels, so checking a whole dataset is cheap; only
    32-bit integer and float images, whose values may have no grey level, are decoded as well.
    """
    try:
        with Image.open(path) as image:
            wide = image.mode in ("I", "F")
            image.verify()
        if wide:  # rare, and only decoding shows a NaN pixel; verify() leaves the image unusable
            with Image.open(path) as image:
                to_8_bit(image)
    except (OSError, SyntaxError, ValueError) as error:  # PIL reports bad structure in these
        return str(error) or type(error).__name__
    return None
