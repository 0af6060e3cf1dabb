"""Reading image and audio files robustly, and the training-time augmentations of each (no torchvision).

Images are read with Pillow and always become RGB (grayscale, palette and alpha images included). Audio is read
with soundfile (wav, flac, aiff, ogg), mixed to mono and resampled with ``scipy.signal.resample_poly``.
Augmentations draw from torch's global generator, which the training loop seeds per epoch, so a run is
reproducible from its seed.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import soundfile as sf
import torch
from PIL import Image, UnidentifiedImageError
from scipy.signal import resample_poly

from adapters_kit.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
AUDIO_EXTENSIONS = (".wav", ".flac", ".aiff", ".aif", ".ogg", ".oga")
TEXT_EXTENSIONS = (".txt",)
MAX_BAD_SHARE = 0.01
"""A split with more unreadable files than this share stops the run instead of training on what is left."""
UNREADABLE = (OSError, ValueError, RuntimeError, UnidentifiedImageError, sf.LibsndfileError, SyntaxError)


def load_image(path: str) -> Image.Image:
    """An RGB image (decoded fully, so a truncated file fails here rather than later)."""
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def read_audio(path: str, rate: int) -> np.ndarray:
    """Mono float32 waveform at ``rate`` Hz."""
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    if audio.size == 0:
        raise ValueError("no samples")
    wave = audio.mean(axis=1)
    if sr != rate:
        ratio = Fraction(rate, sr).limit_denominator(1000)
        wave = resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


def audio_seconds(path: str) -> float:
    """Duration from the file header (no decoding)."""
    info = sf.info(path)
    return info.frames / info.samplerate


def check_files(paths: list[str], probe, what: str, split: str) -> list[bool]:
    """Which files ``probe`` can read. Unreadable ones are reported (count and the first few paths); more than
    :data:`MAX_BAD_SHARE` of a split unreadable is an error, so a broken data set never trains silently."""
    ok = []
    bad = []
    for p in paths:
        try:
            probe(p)
            ok.append(True)
        except UNREADABLE:
            ok.append(False)
            bad.append(p)
    if bad:
        first = ", ".join(bad[:3])
        if len(bad) > MAX_BAD_SHARE * len(paths):
            raise UserError(f"{len(bad)} of {len(paths)} {split} files cannot be read as {what} (e.g. {first}); "
                            f"more than {MAX_BAD_SHARE:.0%} are bad: fix or remove them")
        import logging

        logging.getLogger(__name__).warning("skipping %d unreadable %s file(s) in %s: %s%s", len(bad), what, split,
                                            first, " ..." if len(bad) > 3 else "")
    return ok


def file_stamp(path: str) -> str:
    """Size and modification time: part of the feature-cache key, so an edited file is encoded again."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def augment_image(im: Image.Image, scale: tuple[float, float] = (0.6, 1.0), flip: bool = True) -> Image.Image:
    """Random resized crop (area share ``scale``, aspect ratio 3/4..4/3, back to the input size) and, with
    ``flip``, a horizontal flip half of the time."""
    w, h = im.size
    for _ in range(10):
        area = w * h * _uniform(*scale)
        ratio = math.exp(_uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(torch.randint(0, w - cw + 1, ())), int(torch.randint(0, h - ch + 1, ()))
            im = im.resize((w, h), Image.BILINEAR, box=(x, y, x + cw, y + ch))
            break
    if flip and float(torch.rand(())) < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return im


def augment_audio(wave: np.ndarray, rate: int) -> np.ndarray:
    """Random gain (-6..+6 dB), circular time shift (up to 0.1 s either way) and white noise at 30..50 dB SNR."""
    wave = wave * (10 ** (_uniform(-6, 6) / 20))
    limit = int(0.1 * rate)
    if limit and len(wave) > 1:
        wave = np.roll(wave, int(torch.randint(-limit, limit + 1, ())))
    power = float(np.mean(wave ** 2)) + 1e-12
    noise_power = power / (10 ** (_uniform(30, 50) / 10))
    noise = torch.randn(len(wave), generator=None).numpy() * math.sqrt(noise_power)
    return (wave + noise).astype(np.float32)
