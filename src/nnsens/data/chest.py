"""Seeded synthetic "chest" images for P25 (Mask of truth, arXiv 2412.?): a lesion inside the ROI, a shortcut outside.

Each image is ``size``×``size`` (48 by default): a grey "body", two elliptical textured "lungs" (the region of
interest, ROI), and for positive images a faint Gaussian "lesion" blob inside the lungs (the label-causal signal).
A bright square "device" marker sits at a random position outside the lungs; it is present with probability
(1+ρ)/2 in positive and (1−ρ)/2 in negative images, so a marker-only classifier has AUC at most (1+ρ)/2.

Marker presence is drawn from one uniform number per image (present iff u < (1±ρ)/2) and every other random choice
does not depend on ρ, so the same ``seed`` at two values of ρ gives the same lungs, lesions and labels, and
marker sets nested in ρ (common random numbers across ρ).

:func:`mask_images` builds the five image types of the paper (full, no-ROI, only-ROI, no-ROI-bbox, only-ROI-bbox),
after eroding (spread < 0) or dilating (spread > 0) the ROI |spread| times with the 3×3 ellipse kernel, as the
official ``MaskingDataset`` does with OpenCV; masked pixels are set to 0. The bounding boxes are taken per lung.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

IMAGE_TYPES = ("full", "no_roi", "only_roi", "no_roi_bbox", "only_roi_bbox")
# OpenCV's getStructuringElement(MORPH_ELLIPSE, (3, 3)) is this cross
ELLIPSE_3X3 = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
MARKER_SIZE = 3  # side of the square marker at 48×48 (scaled with the image size)
MARKER_MARGIN = 4  # the marker keeps this many pixels away from the lungs (so a spread up to +3 never covers it)


@dataclass(frozen=True)
class ChestImages:
    """Full images (N, 1, H, W) float32, labels (N,) int64, lung masks (N, H, W) bool, marker boxes (N, H, W) bool
    (all False where the marker is absent), marker presence (N,) bool."""

    images: torch.Tensor
    labels: torch.Tensor
    roi: np.ndarray
    marker: np.ndarray
    has_marker: np.ndarray


def _check(name: str, ok: bool, what: str, got: object) -> None:
    if not ok:
        raise ValueError(f"The {name!r} parameter of chest_images must be {what}. Got {got!r} instead.")


def chest_images(n: int, *, rho: float = 0.6, lesion_amplitude: float = 0.3, size: int = 48, noise: float = 0.05,
                 seed: int = 0) -> ChestImages:
    """Draw ``n`` synthetic chest images with balanced labels (see the module docstring).

    Parameters
    ----------
    n : int
        Number of images (labels alternate 0/1 in a random order, so classes are balanced).
    rho : float in [-1, 1]
        Correlation of the out-of-ROI marker with the label.
    lesion_amplitude : float >= 0
        Peak height of the lesion blob (σ = 1.5 px at 48×48) added to positive images.
    size : int >= 32
        Image side; the geometry scales with it.
    noise : float >= 0
        Standard deviation of the white pixel noise.
    seed : int
        Everything is drawn from ``np.random.default_rng(seed)``.
    """
    _check("n", isinstance(n, int) and n >= 1, "an int >= 1", n)
    _check("rho", -1.0 <= rho <= 1.0, "a float in [-1, 1]", rho)
    _check("lesion_amplitude", lesion_amplitude >= 0, "a float >= 0", lesion_amplitude)
    _check("size", isinstance(size, int) and size >= 32, "an int >= 32", size)
    _check("noise", noise >= 0, "a float >= 0", noise)
    rng = np.random.default_rng(seed)
    s = size / 48.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    labels = rng.permutation(np.arange(n) % 2)
    u_marker = rng.uniform(size=n)
    # body: a wide ellipse of tissue (0.55) on a dark surround
    body = ((yy - 26 * s) / (25 * s)) ** 2 + ((xx - 24 * s) / (21 * s)) ** 2 <= 1.0
    tex = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 1.2 * s, 1.2 * s))
    tex /= tex.std()
    white = rng.normal(size=(n, size, size))
    m = max(2, round(MARKER_SIZE * s))
    sig = 1.5 * s
    # lungs: two jittered ellipses per image, built for the whole batch at once, (n, H, W)
    roi = np.zeros((n, size, size), dtype=bool)
    for cx in (14.0, 34.0):
        cy = (24 + rng.uniform(-2, 2, n)) * s
        cxx = (cx + rng.uniform(-1.5, 1.5, n)) * s
        ay, ax = (13 + rng.uniform(-1.5, 1.5, n)) * s, (6.5 + rng.uniform(-1, 1, n)) * s
        ey, ex = (yy - cy[:, None, None]) / ay[:, None, None], (xx - cxx[:, None, None]) / ax[:, None, None]
        roi |= ey**2 + ex**2 <= 1
    img = np.where(body, 0.55, 0.05)[None] + np.where(roi, -0.25 + 0.08 * tex, 0.0)
    kernel = ELLIPSE_3X3[None]  # (1, 3, 3): no mixing across the batch axis
    # lesion centre: uniform over the lung pixels at least 2 px inside (argmax of uniform scores on that set)
    inner = ndimage.binary_erosion(roi, kernel, iterations=max(1, round(2 * s)))
    flat = np.argmax((rng.uniform(size=(n, size, size)) * inner).reshape(n, -1), axis=1)
    ly, lx = np.divmod(flat, size)
    blob = np.exp(-((yy[None] - ly[:, None, None]) ** 2 + (xx[None] - lx[:, None, None]) ** 2) / (2 * sig**2))
    img = img + lesion_amplitude * labels[:, None, None] * blob
    # marker box: top-left corner uniform over positions whose m×m box stays MARKER_MARGIN px away from the lungs
    # (and 1 px from the border); drawn for every image so that it does not depend on rho
    far = ~ndimage.binary_dilation(roi, kernel, iterations=round(MARKER_MARGIN * s))
    ok = np.zeros_like(far)
    h = size - m - 1  # corners in [1, size - m - 1]
    ok[:, 1:1 + h, 1:1 + h] = True
    for dr in range(m):
        for dc in range(m):
            ok[:, 1:1 + h, 1:1 + h] &= far[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + h]
    flat = np.argmax((rng.uniform(size=(n, size, size)) * ok).reshape(n, -1), axis=1)
    r0, c0 = np.divmod(flat, size)
    p = np.where(labels == 1, (1 + rho) / 2, (1 - rho) / 2)
    present = u_marker < p
    rows, cols = yy[None], xx[None]
    marker = ((rows >= r0[:, None, None]) & (rows < r0[:, None, None] + m) & (cols >= c0[:, None, None])
              & (cols < c0[:, None, None] + m) & present[:, None, None])
    img = np.where(marker, 0.95, img) + noise * white
    has = marker.any(axis=(1, 2))
    return ChestImages(torch.from_numpy(img[:, None].astype(np.float32)), torch.from_numpy(labels.astype(np.int64)),
                       roi, marker, has)


def spread_roi(roi: np.ndarray, spread: int = 0) -> np.ndarray:
    """Erode (``spread`` < 0) or dilate (> 0) each (H, W) mask of ``roi`` (N, H, W) |spread| times (3×3 ellipse)."""
    if not isinstance(spread, (int, np.integer)) or isinstance(spread, bool):
        raise TypeError(f"The 'spread' parameter of spread_roi must be an int. Got {spread!r} instead.")
    if spread == 0:
        return roi.copy()
    op = ndimage.binary_dilation if spread > 0 else ndimage.binary_erosion
    kernel = np.zeros((1, 3, 3), dtype=bool)
    kernel[0] = ELLIPSE_3X3  # no mixing across the batch axis
    return op(roi, kernel, iterations=abs(int(spread)))


def roi_boxes(roi: np.ndarray) -> np.ndarray:
    """(N, H, W) masks of the bounding box of each connected component (each lung) of ``roi``."""
    out = np.zeros_like(roi, dtype=bool)
    for i in range(roi.shape[0]):
        lab, _ = ndimage.label(roi[i])
        for sl in ndimage.find_objects(lab):
            out[i][sl] = True
    return out


def keep_mask(roi: np.ndarray, kind: str, spread: int = 0) -> np.ndarray:
    """(N, H, W) bool: the pixels kept by image type ``kind`` (one of :data:`IMAGE_TYPES`)."""
    if kind not in IMAGE_TYPES:
        raise ValueError(f"The 'kind' parameter of keep_mask must be one of {IMAGE_TYPES}. Got {kind!r} instead.")
    if kind == "full":
        return np.ones_like(roi, dtype=bool)
    r = spread_roi(roi, spread)
    if kind.endswith("bbox"):
        r = roi_boxes(r)
    return ~r if kind.startswith("no_roi") else r


def mask_images(images: torch.Tensor, roi: np.ndarray, kind: str, spread: int = 0) -> torch.Tensor:
    """``images`` (N, 1, H, W) with the pixels outside :func:`keep_mask` set to 0."""
    keep = torch.from_numpy(keep_mask(roi, kind, spread)).to(images.device)
    return images * keep[:, None].to(images.dtype)
