"""Reading images the same way everywhere (featurize, predict, serve), and cached augmentations.

torchvision has no CPU wheel here, so the augmentations are written with PIL.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

DRAFT_SIZE = (448, 448)  # JPEG decode at >= 2x CLIP's 224 px: cheaper, and enough for a 0.6 crop


def open_image(source: str | bytes | io.BytesIO) -> Image.Image:
    """Decode a path or bytes into an upright RGB image.

    The format comes from the content, not the file name (PNG or GIF bytes named .jpg work);
    EXIF rotation is applied; CMYK, grayscale and palette images are converted, and
    transparency is composited onto white.
    """
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.draft("RGB", DRAFT_SIZE)  # only JPEG honours it; a no-op otherwise
    image = ImageOps.exif_transpose(image)
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

    ``verify()`` reads the file without decoding pixels, so checking a whole dataset is cheap.
    """
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError) as error:  # PIL reports bad structure in these
        return str(error) or type(error).__name__
    return None
