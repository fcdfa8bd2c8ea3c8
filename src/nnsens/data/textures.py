"""A procedural texture–shape world for concept-based explanations (TCAV, GCAV; study P58).

Five textures are drawn procedurally, each with random orientation, period and phase:

- ``striped``: parallel bars;
- ``dotted``: a rotated lattice of round dots;
- ``zigzagged``: bars whose centre line follows a triangle wave;
- ``hexagonal``: the bright cells of a sum of three plane waves 60° apart (a honeycomb lattice);
- ``radial``: spokes out of a random centre.

A class image is a random silhouette (disc, square, triangle or ellipse) on a faint generic background, filled with
the class's texture (weight 0.75) blended with a second texture drawn from the other four (weight 0.25): the class
*is* its texture, which plants a known relevant concept per class (zebra–striped, leopard–dotted, snake–zigzagged,
honeycomb–hexagonal, spider web–radial). Concept images are full-frame patches of one texture; random images are
generic patches (smoothed noise at a random scale, sometimes with a brightness ramp), the counterpart of TCAV's
random ImageNet images. Everything is a function of a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch

CONCEPTS = ("striped", "dotted", "zigzagged", "hexagonal", "radial")
CLASSES = ("zebra", "leopard", "snake", "honeycomb", "spider_web")
PLANTED = dict(zip(CLASSES, CONCEPTS, strict=True))  # class -> its planted (relevant) concept
SHAPES = ("disc", "square", "triangle", "ellipse")


def _gen(generator: torch.Generator | int | None) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None or (isinstance(generator, int) and not isinstance(generator, bool) and generator >= 0):
        return torch.Generator().manual_seed(int(generator or 0))
    raise TypeError(f"The 'generator' parameter must be a non-negative int or a torch.Generator. Got {generator!r}.")


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, 1) uniform draws in [lo, hi), broadcastable against (n, H, W) grids."""
    return (lo + (hi - lo) * torch.rand(n, generator=gen)).view(n, 1, 1)


def _grid(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    return x.expand(n, size, size), y.expand(n, size, size)


def _rotated(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates (u, v) of every pixel in a frame rotated by a random angle about a random origin."""
    x, y = _grid(n, size)
    th = _u(n, 0.0, math.pi, gen)
    x0, y0 = _u(n, 0, size, gen), _u(n, 0, size, gen)
    u = (x - x0) * torch.cos(th) + (y - y0) * torch.sin(th)
    v = -(x - x0) * torch.sin(th) + (y - y0) * torch.cos(th)
    return u, v


def texture(kind: str, n: int, size: int = 32, *, generator: torch.Generator | int | None = None) -> torch.Tensor:
    """``n`` binary texture images of one kind, (n, size, size) float32 in {0, 1}; scales follow ``size / 32``."""
    if kind not in CONCEPTS:
        raise ValueError(f"The 'kind' parameter of texture must be one of {', '.join(CONCEPTS)}. Got {kind!r}.")
    gen, s = _gen(generator), size / 32
    if kind == "striped":
        u, _ = _rotated(n, size, gen)
        return (torch.sin(2 * math.pi * u / (s * _u(n, 4.0, 7.0, gen))) > 0).float()
    if kind == "zigzagged":
        u, v = _rotated(n, size, gen)
        q = s * _u(n, 3.0, 5.0, gen)
        tri = 2 * torch.abs(v / q - torch.floor(v / q + 0.5))  # triangle wave in [0, 1], period q
        return (torch.sin(2 * math.pi * (u + s * _u(n, 2.0, 3.0, gen) * tri) / (s * _u(n, 5.0, 7.0, gen))) > 0).float()
    if kind == "dotted":
        u, v = _rotated(n, size, gen)
        p = s * _u(n, 5.0, 8.0, gen)
        du, dv = u - p * torch.round(u / p), v - p * torch.round(v / p)  # offset to the nearest lattice point
        return (du.square() + dv.square() < (s * _u(n, 1.2, 2.0, gen)).square()).float()
    if kind == "hexagonal":
        u, v = _rotated(n, size, gen)
        k = 2 * math.pi / (s * _u(n, 5.0, 8.0, gen))
        h = sum(torch.cos(k * (u * math.cos(a) + v * math.sin(a))) for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3))
        return (h > 0.0).float()  # the three-wave sum peaks on a triangular lattice: round-ish cells on a mesh
    x, y = _grid(n, size)  # radial
    cx, cy = _u(n, 0.3 * size, 0.7 * size, gen), _u(n, 0.3 * size, 0.7 * size, gen)
    ang = torch.atan2(y - cy, x - cx)
    spokes = torch.randint(6, 11, (n, 1, 1), generator=gen).float()
    return (torch.cos(spokes * ang + _u(n, 0, 2 * math.pi, gen)) > 0.3).float()


def random_patches(n: int, size: int = 32, *, generator: torch.Generator | int | None = None) -> torch.Tensor:
    """``n`` generic texture patches (n, size, size) in [0, 1]: Gaussian-smoothed (periodic) noise at a random
    scale, a third of them with a brightness ramp."""
    gen = _gen(generator)
    noise = torch.randn(n, size, size, generator=gen)
    sig = (0.6 + 3.0 * torch.rand(n, generator=gen)).view(n, 1, 1) * size / 32
    ramp = (torch.rand(n, generator=gen) < 0.3).float().view(n, 1, 1)
    th = 2 * math.pi * torch.rand(n, generator=gen).view(n, 1, 1)
    f = torch.fft.fftfreq(size)
    f2 = f.view(-1, 1).square() + f.view(1, -1).square()  # (size, size) squared frequency, cycles per pixel
    img = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-2 * math.pi**2 * sig.square() * f2)).real  # periodic blur
    img = (img - img.mean((1, 2), keepdim=True)) / (img.std((1, 2), keepdim=True) + 1e-8)
    x, y = _grid(n, size)
    img = img + ramp * 1.5 * ((x * torch.cos(th) + y * torch.sin(th)) / size - 0.5)
    return torch.sigmoid(1.5 * img)


def _silhouettes(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(n, size, size) bool masks of random shapes of side ≈ 55–85 % of the image."""
    x, y = _grid(n, size)
    r = _u(n, 0.28, 0.42, gen) * size
    cx, cy = _u(n, 0.4, 0.6, gen) * size, _u(n, 0.4, 0.6, gen) * size
    dx, dy = x - cx, y - cy
    kind = torch.randint(len(SHAPES), (n, 1, 1), generator=gen)
    disc = dx.square() + dy.square() <= r.square()
    square = (dx.abs() <= 0.85 * r) & (dy.abs() <= 0.85 * r)
    tri = (dy <= 0.7 * r) & (dy >= -r + 1.9 * dx.abs())  # apex up, base at cy + 0.7 r
    ell = (dx / (1.25 * r)).square() + (dy / (0.7 * r)).square() <= 1
    return torch.where(kind == 0, disc, torch.where(kind == 1, square, torch.where(kind == 2, tri, ell)))


def class_images(n: int, size: int = 32, *, generator: torch.Generator | int | None = None,
                 noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` class images (n, 1, size, size) in [0, 1] and their labels (n,), balanced over :data:`CLASSES`.

    Each image: a faint generic background (contrast 0.3), a random silhouette filled with 0.75 × the class's
    texture + 0.25 × another texture, additive Gaussian noise of standard deviation ``noise``.
    """
    gen = _gen(generator)
    labels = torch.arange(n) % len(CLASSES)
    labels = labels[torch.randperm(n, generator=gen)]
    second = (labels + torch.randint(1, len(CONCEPTS), (n,), generator=gen)) % len(CONCEPTS)
    fill = torch.zeros(n, size, size)
    for k, kind in enumerate(CONCEPTS):
        main, other = labels == k, second == k
        if main.any():
            fill[main] += 0.75 * texture(kind, int(main.sum()), size, generator=gen)
        if other.any():
            fill[other] += 0.25 * texture(kind, int(other.sum()), size, generator=gen)
    back = 0.35 + 0.3 * (random_patches(n, size, generator=gen) - 0.5)
    mask = _silhouettes(n, size, gen)
    img = torch.where(mask, 0.1 + 0.85 * fill, back) + noise * torch.randn(n, size, size, generator=gen)
    return img.clamp(0, 1).unsqueeze(1), labels


def concept_images(kind: str, n: int, size: int = 32, *, generator: torch.Generator | int | None = None,
                   noise: float = 0.05) -> torch.Tensor:
    """``n`` full-frame patches of the concept ``kind`` (n, 1, size, size), contrast as in class images."""
    gen = _gen(generator)
    img = 0.1 + 0.85 * texture(kind, n, size, generator=gen) + noise * torch.randn(n, size, size, generator=gen)
    return img.clamp(0, 1).unsqueeze(1)


def random_sets(n_sets: int, n: int, size: int = 32, *, generator: torch.Generator | int | None = None,
                noise: float = 0.05) -> torch.Tensor:
    """``n_sets`` random concept sets of ``n`` generic patches each, (n_sets, n, 1, size, size)."""
    gen = _gen(generator)
    img = random_patches(n_sets * n, size, generator=gen) + noise * torch.randn(n_sets * n, size, size, generator=gen)
    return img.clamp(0, 1).view(n_sets, n, 1, size, size)
