"""Multi-instance shape canvases: 1-3 procedural shapes on a cluttered background, with boxes and masks (P47).

Each canvas (default 32x32, grey, values in [0, 1]) holds a *main* class drawn 1, 2 or 3 times and, when there is
room, one instance of another class. The four shape classes are a cross (plus sign), a ring, a filled triangle and a
bar (horizontal or vertical); each instance has its own size, position and brightness, and instances never touch
(their boxes keep a gap of at least one pixel). The background is uniform noise plus *clutter*: short strokes and
dots, too small to be a shape, drawn under the instances. The task is multi-label presence (one sigmoid per class);
what an attribution method should find is kept per instance: its class, its tight box and its pixel mask.

Everything is drawn from ``numpy.random.default_rng(generator)`` (an int seed or a ``numpy.random.Generator``), so a
data set is a pure function of its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SHAPES = ("cross", "ring", "triangle", "bar")
MAX_INSTANCES = 3


@dataclass(frozen=True)
class ShapeCanvases:
    """A multi-instance shape data set.

    Attributes
    ----------
    images : Tensor, (N, 1, H, W) float32 in [0, 1]
    labels : Tensor, (N, 4) float32 multi-hot presence of each class (the training target)
    counts : Tensor, (N, 4) int64, instances of each class
    classes : Tensor, (N, 3) int64, the class of each instance slot (-1 = empty slot)
    boxes : Tensor, (N, 3, 4) int64, each instance's tight box ``(top, left, bottom, right)``, bottom/right
        exclusive (-1 = empty slot)
    masks : Tensor, (N, 3, H, W) bool, each instance's pixels
    main : Tensor, (N,) int64, the image's main class (the one drawn 1-3 times)
    """

    images: torch.Tensor
    labels: torch.Tensor
    counts: torch.Tensor
    classes: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    main: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor | slice) -> ShapeCanvases:
        """The canvases selected by ``index`` (a boolean mask, indices or a slice)."""
        return ShapeCanvases(*(getattr(self, f)[index] for f in
                               ("images", "labels", "counts", "classes", "boxes", "masks", "main")))

    def box_masks(self, target: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) bool: the box of every instance of class ``target[i]`` (other slots all False)."""
        n, m, h, w = self.masks.shape
        rows = torch.arange(h)[None, None, :, None]
        cols = torch.arange(w)[None, None, None, :]
        b = self.boxes[..., None, None]  # (N, 3, 4, 1, 1): b[:, :, 0] is the tops, (N, 3, 1, 1)
        inside = ((rows >= b[:, :, 0]) & (rows < b[:, :, 2]) & (cols >= b[:, :, 1]) & (cols < b[:, :, 3]))
        return inside & (self.classes == target.reshape(n, 1).to(self.classes.device))[..., None, None]


def shape_mask(kind: str, size: int, *, vertical: bool = False) -> np.ndarray:
    """The binary pixel mask of one shape of side ``size`` (a ``size x size`` array; a bar fills a band of it)."""
    if kind not in SHAPES:
        raise ValueError(f"The 'kind' parameter of shape_mask must be one of {', '.join(SHAPES)}. Got {kind!r}.")
    if not (isinstance(size, int) and size >= 4):
        raise ValueError(f"The 'size' parameter of shape_mask must be an int in [4, inf). Got {size!r} instead.")
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(float)
    c = (s - 1) / 2
    if kind == "cross":
        t = max(1.0, s / 4) / 2  # half the arm thickness
        m = (np.abs(yy - c) <= t) | (np.abs(xx - c) <= t)
    elif kind == "ring":
        r = np.hypot(yy - c, xx - c)
        m = (r <= s / 2) & (r >= s / 2 - max(1.2, s / 5))
    elif kind == "triangle":  # apex at the top, base on the bottom row
        m = np.abs(xx - c) <= (yy + 1) / s * (s / 2)
    else:  # a bar: the full length, a third of the width, centred
        t = max(2, round(s / 3))
        lo = (s - t) // 2
        m = np.zeros((s, s), bool)
        m[lo : lo + t, :] = True
        if vertical:
            m = m.T
    return m.astype(bool)


def _place(rng: np.random.Generator, size_hw: tuple[int, int], extents: list[tuple[int, int]],
           gap: int = 1, tries: int = 200) -> list[tuple[int, int]] | None:
    """Top-left corners for boxes of the given (height, width) with no two boxes closer than ``gap`` pixels."""
    h, w = size_hw
    for _ in range(tries):
        placed: list[tuple[int, int, int, int]] = []
        for eh, ew in extents:
            for _ in range(50):
                top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                box = (top, left, top + eh, left + ew)
                if all(box[0] >= q[2] + gap or q[0] >= box[2] + gap or box[1] >= q[3] + gap or q[1] >= box[3] + gap
                       for q in placed):
                    placed.append(box)
                    break
            else:
                break
        if len(placed) == len(extents):
            return [(b[0], b[1]) for b in placed]
    return None


def shape_canvases(
    n: int,
    *,
    image_size: int = 32,
    size_range: tuple[int, int] = (6, 11),
    brightness: tuple[float, float] = (0.6, 1.0),
    noise: float = 0.15,
    n_clutter: tuple[int, int] = (3, 7),
    other_fraction: float = 0.5,
    generator: int | np.random.Generator | None = 0,
) -> ShapeCanvases:
    """Draw ``n`` multi-instance canvases.

    Parameters
    ----------
    n : number of canvases.
    image_size : side of the square canvas.
    size_range : an instance's side is uniform on these integers (inclusive).
    brightness : an instance's pixels take a brightness uniform on this range (one value per instance).
    noise : background pixels get uniform noise on [0, noise].
    n_clutter : the number of clutter strokes and dots per canvas is uniform on these integers (inclusive).
    other_fraction : with one or two main instances, the share of canvases that also show one instance of
        another class.
    generator : int seed or numpy Generator.
    """
    fn = "shape_canvases"
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"The 'n' parameter of {fn} must be an int in [1, inf). Got {n!r} instead.")
    lo, hi = size_range
    if not (4 <= lo <= hi <= image_size // 2):
        raise ValueError(f"The 'size_range' parameter of {fn} must satisfy 4 <= low <= high <= image_size // 2 = "
                         f"{image_size // 2}. Got {size_range!r} instead.")
    if not 0.0 <= other_fraction <= 1.0:
        raise ValueError(f"The 'other_fraction' parameter of {fn} must be a float in [0, 1]. "
                         f"Got {other_fraction!r} instead.")
    rng = np.random.default_rng(generator)
    s = image_size
    images = np.zeros((n, 1, s, s), np.float32)
    classes = np.full((n, MAX_INSTANCES), -1, np.int64)
    boxes = np.full((n, MAX_INSTANCES, 4), -1, np.int64)
    masks = np.zeros((n, MAX_INSTANCES, s, s), bool)
    main = rng.integers(0, len(SHAPES), size=n)
    for i in range(n):
        k = int(rng.integers(1, MAX_INSTANCES + 1))
        kinds = [int(main[i])] * k
        if k < MAX_INSTANCES and rng.random() < other_fraction:
            kinds.append(int((main[i] + rng.integers(1, len(SHAPES))) % len(SHAPES)))
        while True:  # draw shapes, then positions; redraw sizes if they do not fit
            shapes = [shape_mask(SHAPES[c], int(rng.integers(lo, hi + 1)), vertical=bool(rng.random() < 0.5))
                      for c in kinds]
            tight = []
            for m in shapes:  # crop to the tight box: a bar is a band
                r, q = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                tight.append(m[r[0] : r[-1] + 1, q[0] : q[-1] + 1])
            corners = _place(rng, (s, s), [t.shape for t in tight])
            if corners is not None:
                break
        canvas = rng.uniform(0, noise, size=(s, s))
        for _ in range(int(rng.integers(n_clutter[0], n_clutter[1] + 1))):  # strokes of 1-3 px, dots of 2x2
            y, x = int(rng.integers(0, s - 1)), int(rng.integers(0, s - 1))
            val = rng.uniform(0.3, 0.6)
            if rng.random() < 0.5:
                canvas[y : y + 2, x : x + 2] = val
            else:
                length = int(rng.integers(1, 4))
                if rng.random() < 0.5:
                    canvas[y, x : x + length] = val
                else:
                    canvas[y : y + length, x] = val
        for j, (c, t, (top, left)) in enumerate(zip(kinds, tight, corners)):
            eh, ew = t.shape
            canvas[top : top + eh, left : left + ew][t] = rng.uniform(*brightness)
            classes[i, j] = c
            boxes[i, j] = (top, left, top + eh, left + ew)
            masks[i, j, top : top + eh, left : left + ew] = t
        images[i, 0] = np.clip(canvas, 0, 1)
    counts = np.stack([(classes == c).sum(1) for c in range(len(SHAPES))], axis=1)
    return ShapeCanvases(
        images=torch.from_numpy(images),
        labels=torch.from_numpy((counts > 0).astype(np.float32)),
        counts=torch.from_numpy(counts.astype(np.int64)),
        classes=torch.from_numpy(classes),
        boxes=torch.from_numpy(boxes),
        masks=torch.from_numpy(masks),
        main=torch.from_numpy(main.astype(np.int64)),
    )
