"""Digit glyphs on procedural textures, with known boxes: planted objects for pointing games (P65).

An image is ``image_size x image_size`` grey. Its class is a scikit-learn digit (8x8, upscaled x2 to 16x16, then by a
random factor in ``scale``) pasted at a random position over a procedural texture (smoothed noise plus a faint
oriented grating). With probability ``distractor_prob`` a *distractor* glyph of another class is pasted too, fainter
(``distractor_contrast``) and not overlapping the target's box, so the label stays defined: it is the bright glyph.

The ground truth kept for each image: the target glyph's bounding box (pixels where its opacity exceeds 0.2), its
stroke mask and stroke-pixel count (opacity > 0.5), and the distractor's box. Training and test images draw their
glyphs from disjoint halves of the 1,797 digits (``split``), so a test glyph was never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

SPLITS = ("train", "test")
BOX_LEVEL, STROKE_LEVEL = 0.2, 0.5


@dataclass(frozen=True)
class GlyphImages:
    """A glyph data set.

    Attributes
    ----------
    images : Tensor, (N, 1, S, S) float32 in [0, 1]
    labels : Tensor, (N,) int64, the target glyph's digit
    boxes : Tensor, (N, 4) int64, the target's box as (row0, col0, row1, col1), end-exclusive
    strokes : Tensor, (N, S, S) bool, the target's stroke pixels
    stroke_pixels : Tensor, (N,) int64, their count
    distractor_boxes : Tensor, (N, 4) int64, the distractor's box, all -1 when there is none
    """

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    strokes: torch.Tensor
    stroke_pixels: torch.Tensor
    distractor_boxes: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def has_distractor(self) -> torch.Tensor:
        """(N,) bool: whether the image holds a distractor glyph."""
        return self.distractor_boxes[:, 0] >= 0

    def box_masks(self) -> torch.Tensor:
        """The target boxes as (N, S, S) bool pixel masks."""
        s = self.images.shape[-1]
        r = torch.arange(s)
        b = self.boxes
        rows = (r[None] >= b[:, 0, None]) & (r[None] < b[:, 2, None])  # (N, S)
        cols = (r[None] >= b[:, 1, None]) & (r[None] < b[:, 3, None])
        return rows[:, :, None] & cols[:, None, :]

    def subset(self, index: torch.Tensor | slice) -> GlyphImages:
        """The images selected by ``index`` (a boolean mask, indices or a slice)."""
        return GlyphImages(self.images[index], self.labels[index], self.boxes[index], self.strokes[index],
                           self.stroke_pixels[index], self.distractor_boxes[index])


def _glyph_bank(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Digits in [0, 1] of one half of the set (even rows: train, odd rows: test): (M, 8, 8), (M,)."""
    ds = load_digits()
    part = 0 if split == "train" else 1
    return (ds.images[part::2] / 16.0).astype(np.float32), ds.target[part::2].astype(np.int64)


def _textures(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` textures (n, size, size): smoothed noise in [0, 0.3] plus a grating of random orientation and period
    (amplitude 0.06). The noise is low-passed in Fourier space (periodic), with a blur width in [1, 3] per image."""
    f = np.fft.fftfreq(size)
    f2 = f[:, None] ** 2 + f[None, :] ** 2  # (size, size) squared frequency
    sigma = rng.uniform(1.0, 3.0, size=(n, 1, 1))
    spec = np.fft.fft2(rng.standard_normal((n, size, size))) * np.exp(-2 * np.pi**2 * sigma**2 * f2)
    noise = np.fft.ifft2(spec).real
    lo, hi = noise.min(axis=(1, 2), keepdims=True), noise.max(axis=(1, 2), keepdims=True)
    noise = (noise - lo) / np.maximum(hi - lo, 1e-8)
    theta = rng.uniform(0, np.pi, size=(n, 1, 1))
    period = rng.uniform(4.0, 10.0, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size]
    grating = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
    return 0.3 * noise + 0.06 * (grating + 1) / 2


def _rendered(bank: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Every 8x8 glyph of the bank resized to side x side (bilinear, antialiased), as opacity in [0, 1], and the
    glyph's box inside its square, (M, 4) as (row0, col0, row1, col1)."""
    t = torch.from_numpy(bank)[:, None]
    up = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    alpha = up[:, 0].clamp(0, 1).numpy()
    on = alpha > BOX_LEVEL
    rows, cols = on.any(2), on.any(1)  # (M, side)
    first = lambda a: a.argmax(1)  # noqa: E731
    last = lambda a: side - a[:, ::-1].argmax(1)  # noqa: E731
    return alpha, np.stack([first(rows), first(cols), last(rows), last(cols)], axis=1)


def glyph_images(
    n: int,
    *,
    split: str = "train",
    image_size: int = 32,
    scale: tuple[float, float] = (0.6, 1.2),
    distractor_prob: float = 0.3,
    distractor_contrast: float = 0.45,
    generator: int = 0,
) -> GlyphImages:
    """Draw ``n`` glyph images (see the module docstring); everything follows from the int seed ``generator``."""
    fn = "glyph_images"
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"The 'n' parameter of {fn} must be an int in [1, inf). Got {n!r} instead.")
    if split not in SPLITS:
        raise ValueError(f"The 'split' parameter of {fn} must be one of 'train', 'test'. Got {split!r} instead.")
    lo, hi = scale
    if not 0 < lo <= hi or round(16 * hi) > image_size:
        raise ValueError(f"The 'scale' parameter of {fn} must be (low, high) with 0 < low <= high and a 16-pixel "
                         f"glyph scaled by high fitting in {image_size} pixels. Got {scale!r} instead.")
    if not 0.0 <= distractor_prob <= 1.0:
        raise ValueError(f"The 'distractor_prob' parameter of {fn} must be a float in [0, 1]. "
                         f"Got {distractor_prob!r} instead.")
    bank, bank_y = _glyph_bank(split)
    rng = np.random.default_rng([int(generator), 65])
    s = image_size
    sides = range(round(16 * lo), round(16 * hi) + 1)
    renders = {side: _rendered(bank, side) for side in sides}
    images = _textures(n, s, rng)[:, None].astype(np.float32)  # (n, 1, s, s)
    labels = np.zeros(n, np.int64)
    boxes = np.zeros((n, 4), np.int64)
    dboxes = -np.ones((n, 4), np.int64)
    strokes = np.zeros((n, s, s), bool)
    for i in range(n):
        img = images[i, 0]
        k = int(rng.integers(len(bank)))
        side = min(max(int(round(16 * rng.uniform(lo, hi))), sides.start), sides.stop - 1)
        alpha, rel = renders[side][0][k], renders[side][1][k]
        r, c = (int(v) for v in rng.integers(0, s - side + 1, size=2))
        box = rel + np.array([r, c, r, c])
        if rng.random() < distractor_prob:
            kd = int(rng.choice(np.nonzero(bank_y != bank_y[k])[0]))
            dside = min(max(int(round(16 * rng.uniform(lo, hi))), sides.start), sides.stop - 1)
            dalpha, drel = renders[dside][0][kd], renders[dside][1][kd]
            for _ in range(50):  # rejection: the distractor's box must not touch the target's
                dr, dc = (int(v) for v in rng.integers(0, s - dside + 1, size=2))
                db = drel + np.array([dr, dc, dr, dc])
                if db[2] <= box[0] or db[0] >= box[2] or db[3] <= box[1] or db[1] >= box[3]:
                    patch = img[dr : dr + dside, dc : dc + dside]
                    img[dr : dr + dside, dc : dc + dside] = patch * (1 - dalpha) + distractor_contrast * dalpha
                    dboxes[i] = db
                    break
        patch = img[r : r + side, c : c + side]
        img[r : r + side, c : c + side] = patch * (1 - alpha) + 0.95 * alpha
        strokes[i, r : r + side, c : c + side] = alpha > STROKE_LEVEL
        labels[i], boxes[i] = bank_y[k], box
    return GlyphImages(
        torch.from_numpy(np.clip(images, 0, 1)), torch.from_numpy(labels), torch.from_numpy(boxes),
        torch.from_numpy(strokes), torch.from_numpy(strokes.sum((1, 2))), torch.from_numpy(dboxes),
    )
