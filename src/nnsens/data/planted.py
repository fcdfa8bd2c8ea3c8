"""Images with planted evidence: where the class evidence lies is known, so attributions can be scored.

An image is a ``grid_size x grid_size`` grid of ``cell_size x cell_size`` cells (default 8x8 cells of 4x4 pixels,
32x32 pixels) over a noise background. Some cells hold *textured distractors* (random binary textures), some hold
*class evidence* (fixed textures, two per class: piece ``a`` and piece ``b``). A texture fills the top-left
``texture_size x texture_size`` pixels of its cell (default 3x3, leaving a one-pixel margin of background), so a
3x3-conv-conv detector centred on a texture sees no neighbouring cell: the evidence reads the same whatever lies
next to it. Label 0 means "no class evidence"; labels ``1..n_classes`` are the classes. Three sub-tasks say how the
pieces make up a class:

- ``"single"``: one piece (``a``) of the class suffices and is the only piece shown;
- ``"or"``: two copies of piece ``a`` in two cells are redundant, either one alone makes the class (label = a1 OR
  a2); a max-pooling head sees the same feature twice, so the redundancy exists in the model too;
- ``"and"``: pieces ``a`` and ``b`` are synergistic, the class needs both (label = a AND b); a negative image may
  show one piece alone (``partial_fraction``), which teaches a model that one piece is not enough.

Everything is drawn from a ``torch.Generator``; the evidence textures come from ``pattern_seed`` alone, so training
and test sets drawn with different generators share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TASKS = ("single", "or", "and")


@dataclass(frozen=True)
class PlantedImages:
    """A planted-evidence data set.

    Attributes
    ----------
    images : Tensor, (N, 1, H, W) float32 in [0, 1]
    labels : Tensor, (N,) int64; 0 = no class evidence, 1..n_classes = class
    evidence : Tensor, (N, G, G) bool; cells holding a class-evidence piece (the ground truth)
    distractors : Tensor, (N, G, G) bool; cells holding a distractor texture
    pieces : Tensor, (N, 2) bool; which of the task's two evidence slots the image shows (the first slot holds
        piece a; the second holds a again for "or", b for "and", and is empty for "single")
    task, grid_size, cell_size : the generator's settings
    """

    images: torch.Tensor
    labels: torch.Tensor
    evidence: torch.Tensor
    distractors: torch.Tensor
    pieces: torch.Tensor
    task: str
    grid_size: int
    cell_size: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def pixel_mask(self, cells: torch.Tensor | None = None) -> torch.Tensor:
        """Upsample a (N, G, G) cell mask (default: ``evidence``) to a (N, H, W) pixel mask."""
        cells = self.evidence if cells is None else cells
        s = self.cell_size
        return cells.repeat_interleave(s, dim=1).repeat_interleave(s, dim=2)

    def subset(self, index: torch.Tensor | slice) -> PlantedImages:
        """The images selected by ``index`` (a boolean mask, indices or a slice)."""
        return PlantedImages(
            self.images[index], self.labels[index], self.evidence[index], self.distractors[index],
            self.pieces[index], self.task, self.grid_size, self.cell_size,
        )


def _random_textures(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` binary textures (n, size, size) with ``size**2 // 2`` pixels on."""
    k = size * size
    keys = torch.rand(n, k, generator=gen)
    on = keys.argsort(dim=1) < k // 2
    return on.float().reshape(n, size, size)


def evidence_patterns(n_classes: int, *, texture_size: int = 3, pattern_seed: int = 0) -> torch.Tensor:
    """The class-evidence textures, (n_classes, 2, t, t) binary: pieces ``a`` and ``b`` of each class.

    Drawn by rejection so that any two differ in at least ``t*t // 3`` pixels (they are told apart by shape).
    """
    gen = torch.Generator().manual_seed(int(pattern_seed))
    need, k = 2 * n_classes, texture_size * texture_size
    chosen: list[torch.Tensor] = []
    for _ in range(100_000):
        if len(chosen) == need:
            break
        cand = _random_textures(1, texture_size, gen)[0]
        if all((cand != c).sum() >= k // 3 for c in chosen):
            chosen.append(cand)
    else:
        raise ValueError(f"Cannot draw {need} distinct {texture_size}x{texture_size} textures; "
                         f"use fewer classes or a larger texture_size.")
    return torch.stack(chosen).reshape(n_classes, 2, texture_size, texture_size)


def _distractor_textures(n: int, bank: torch.Tensor, gen: torch.Generator, min_distance: int) -> torch.Tensor:
    """``n`` random textures, each ``min_distance`` pixels or more away from every texture of ``bank`` (m, t, t)."""
    t = bank.shape[-1]
    out = _random_textures(n, t, gen)
    while True:
        dist = (out[:, None] != bank[None]).flatten(2).sum(2).amin(1)  # (n,) Hamming distance to the bank
        bad = dist < min_distance
        if not bad.any():
            return out
        out[bad] = _random_textures(int(bad.sum()), t, gen)


def planted_images(
    n: int,
    *,
    task: str = "single",
    n_classes: int = 3,
    grid_size: int = 8,
    cell_size: int = 4,
    texture_size: int | None = None,
    n_distractors: int = 6,
    noise: float = 0.2,
    brightness: tuple[float, float] = (0.8, 0.9),
    null_fraction: float = 0.25,
    both_fraction: float = 1.0,
    partial_fraction: float = 0.5,
    pattern_seed: int = 0,
    generator: torch.Generator | int | None = None,
) -> PlantedImages:
    """Draw ``n`` planted-evidence images.

    Parameters
    ----------
    task : {"single", "or", "and"}
    n_classes : number of classes besides label 0 ("no evidence").
    texture_size : side of a texture inside its cell (default ``cell_size - 1``: a one-pixel margin).
    n_distractors : distractor textures per image, in cells free of evidence.
    noise : every pixel gets uniform noise on [0, noise].
    brightness : a texture's on-pixels add a brightness drawn per cell, uniform on this range.
    null_fraction : share of images with label 0.
    both_fraction : for ``"or"``, the share of positive images showing both copies (1.0, the default, makes every
        positive image redundant; 1/3 samples the OR truth table's positive rows uniformly).
    partial_fraction : for ``"and"``, the share of label-0 images that show one piece of some class alone.
    pattern_seed : seed of the evidence textures (shared between data sets).
    generator : torch.Generator or int seed for everything else.
    """
    if task not in TASKS:
        raise ValueError(f"The 'task' parameter of planted_images must be one of {TASKS}. Got {task!r} instead.")
    for name, value, lo in (("n", n, 1), ("n_classes", n_classes, 1), ("grid_size", grid_size, 2),
                            ("cell_size", cell_size, 2), ("n_distractors", n_distractors, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ValueError(f"The {name!r} parameter of planted_images must be an int in [{lo}, inf). "
                             f"Got {value!r} instead.")
    for name, value in (("null_fraction", null_fraction), ("both_fraction", both_fraction),
                        ("partial_fraction", partial_fraction), ("noise", noise)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"The {name!r} parameter of planted_images must be a float in [0, 1]. "
                             f"Got {value!r} instead.")
    if len(brightness) != 2 or not 0.0 <= brightness[0] <= brightness[1] <= 1.0:
        raise ValueError(f"The 'brightness' parameter of planted_images must be a pair 0 <= low <= high <= 1. "
                         f"Got {brightness!r} instead.")
    t = cell_size - 1 if texture_size is None else texture_size
    if not isinstance(t, int) or isinstance(t, bool) or not 2 <= t <= cell_size:
        raise ValueError(f"The 'texture_size' parameter of planted_images must be an int in [2, cell_size]. "
                         f"Got {texture_size!r} instead.")
    if n_distractors + 2 > grid_size * grid_size:
        raise ValueError(f"The 'n_distractors' parameter of planted_images must be at most grid_size**2 - 2 = "
                         f"{grid_size * grid_size - 2}. Got {n_distractors} instead.")
    gen = generator if isinstance(generator, torch.Generator) else torch.Generator().manual_seed(int(generator or 0))
    g, s, n_cells = grid_size, cell_size, grid_size * grid_size
    bank = evidence_patterns(n_classes, texture_size=t, pattern_seed=pattern_seed)  # (K, 2, t, t)

    # Labels and which pieces (a, b) each image shows.
    positive = torch.rand(n, generator=gen) >= null_fraction
    cls = torch.randint(1, n_classes + 1, (n,), generator=gen)
    u = torch.rand(n, generator=gen)
    coin = torch.rand(n, generator=gen) < 0.5
    pieces = torch.zeros(n, 2, dtype=torch.bool)
    if task == "single":
        pieces[:, 0] = positive
    elif task == "or":
        both = u < both_fraction
        pieces[:, 0] = positive & (both | coin)
        pieces[:, 1] = positive & (both | ~coin)
    else:  # "and": positives show both pieces; some negatives show one piece alone
        partial = ~positive & (u < partial_fraction)
        pieces[:, 0] = positive | (partial & coin)
        pieces[:, 1] = positive | (partial & ~coin)
    labels = torch.where(positive, cls, torch.zeros_like(cls))

    # Cells: a random permutation per image; the first two slots are for pieces a and b, the next for distractors.
    order = torch.rand(n, n_cells, generator=gen).argsort(dim=1)  # (n, G*G)
    rows = torch.arange(n)
    evidence = torch.zeros(n, n_cells, dtype=torch.bool)
    distractors = torch.zeros(n, n_cells, dtype=torch.bool)
    textures = torch.zeros(n, n_cells, t, t)  # per-cell binary texture, (n, G*G, t, t)
    for j in range(2):
        on = pieces[:, j]
        evidence[rows[on], order[on, j]] = True
        piece = 1 if (task == "and" and j == 1) else 0  # "or" repeats piece a; "and" needs a and b
        textures[rows[on], order[on, j]] = bank[cls[on] - 1, piece]
    if n_distractors:
        slots = order[:, 2 : 2 + n_distractors]  # (n, n_distractors)
        distractors[rows[:, None], slots] = True
        tex = _distractor_textures(n * n_distractors, bank.flatten(0, 1), gen, (t * t) // 3)
        textures[rows[:, None], slots] = tex.reshape(n, n_distractors, t, t)

    # Render: uniform noise on [0, noise] everywhere; a texture's on-pixels add a brightness drawn per cell.
    bright = brightness[0] + (brightness[1] - brightness[0]) * torch.rand(n, n_cells, 1, 1, generator=gen)
    cells = noise * torch.rand(n, n_cells, s, s, generator=gen)  # (n, G*G, s, s)
    cells[:, :, :t, :t] += bright * textures
    cells.clamp_(0.0, 1.0)
    # (n, G, G, s, s) -> (n, G, s, G, s) -> (n, 1, G*s, G*s)
    images = cells.reshape(n, g, g, s, s).permute(0, 1, 3, 2, 4).reshape(n, 1, g * s, g * s)
    return PlantedImages(
        images=images.contiguous(),
        labels=labels,
        evidence=evidence.reshape(n, g, g),
        distractors=distractors.reshape(n, g, g),
        pieces=pieces,
        task=task,
        grid_size=g,
        cell_size=s,
    )
