"""The planted-evidence image generator: shapes, ground truth, sub-task logic, seeding, arguments."""

from __future__ import annotations

import pytest
import torch

from nnsens.data import PlantedImages, evidence_patterns, planted_images


def _texture(data: PlantedImages, i: int, cell: int) -> torch.Tensor:
    """Binary texture in cell ``cell`` (flat index) of image i: on-pixels exceed the noise level."""
    g, s = data.grid_size, data.cell_size
    r, c = divmod(cell, g)
    t = s - 1
    return (data.images[i, 0, r * s : r * s + t, c * s : c * s + t] > 0.5).float()


@pytest.mark.parametrize("task", ["single", "or", "and"])
def test_shapes_ranges_and_labels(task):
    d = planted_images(300, task=task, generator=0)
    assert d.images.shape == (300, 1, 32, 32) and d.images.dtype == torch.float32
    assert d.images.min() >= 0 and d.images.max() <= 1
    assert d.evidence.shape == d.distractors.shape == (300, 8, 8) and d.evidence.dtype == torch.bool
    assert set(d.labels.unique().tolist()) == {0, 1, 2, 3}
    assert 0.15 < (d.labels == 0).float().mean() < 0.35  # null_fraction = 0.25
    assert (d.distractors.flatten(1).sum(1) == 6).all() and not (d.evidence & d.distractors).any()
    assert len(d) == 300 and d.task == task


def test_evidence_counts_follow_the_task():
    single = planted_images(200, task="single", generator=1)
    n_ev = single.evidence.flatten(1).sum(1)
    assert torch.equal(n_ev, (single.labels > 0).long())
    both = planted_images(200, task="or", generator=1)  # both_fraction = 1: every positive shows both copies
    assert torch.equal(both.evidence.flatten(1).sum(1), 2 * (both.labels > 0).long())
    table = planted_images(600, task="or", both_fraction=1 / 3, generator=1)
    pos = table.labels > 0
    counts = table.evidence.flatten(1).sum(1)[pos]
    assert set(counts.tolist()) == {1, 2} and 0.25 < (counts == 2).float().mean() < 0.42
    assert (table.evidence.flatten(1).sum(1)[~pos] == 0).all()
    conj = planted_images(600, task="and", generator=1)
    counts = conj.evidence.flatten(1).sum(1)
    assert (counts[conj.labels > 0] == 2).all()
    neg = counts[conj.labels == 0]  # label 0: no piece, or one piece alone (partial_fraction = 0.5)
    assert set(neg.tolist()) == {0, 1} and 0.35 < (neg == 1).float().mean() < 0.65


def test_cells_hold_the_class_textures():
    bank = evidence_patterns(3)
    for task in ("or", "and"):
        d = planted_images(50, task=task, null_fraction=0.0, noise=0.2, generator=2)
        for i in range(50):
            cells = torch.nonzero(d.evidence[i].flatten()).flatten().tolist()
            tex = [_texture(d, i, c) for c in cells]
            wanted = {tuple(bank[d.labels[i] - 1, j].flatten().tolist()) for j in ((0,) if task == "or" else (0, 1))}
            assert {tuple(t.flatten().tolist()) for t in tex} == wanted
            for c in torch.nonzero(d.distractors[i].flatten()).flatten().tolist():  # distractors are not evidence
                assert (_texture(d, i, c)[None] != bank.flatten(0, 1)).flatten(1).sum(1).min() >= 3


def test_margin_keeps_cells_apart():
    """Textures fill the top-left 3x3 of each 4x4 cell: the last row and column of every cell are noise only."""
    d = planted_images(100, task="or", noise=0.2, generator=3)
    img = d.images[:, 0].reshape(100, 8, 4, 8, 4)
    assert img[:, :, 3].max() <= 0.2 and img[:, :, :, :, 3].max() <= 0.2


def test_seeding_and_shared_patterns():
    a = planted_images(20, task="or", generator=5)
    b = planted_images(20, task="or", generator=torch.Generator().manual_seed(5))
    c = planted_images(20, task="or", generator=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.evidence, b.evidence)
    assert not torch.equal(a.images, c.images)
    assert torch.equal(evidence_patterns(3), evidence_patterns(3))
    assert not torch.equal(evidence_patterns(3), evidence_patterns(3, pattern_seed=1))
    bank = evidence_patterns(4)
    flat = bank.flatten(0, 1).flatten(1)
    dist = (flat[:, None] != flat[None]).sum(-1) + 100 * torch.eye(8, dtype=torch.long)
    assert dist.min() >= 3  # textures differ in at least a third of their 9 pixels


def test_pixel_mask_and_subset():
    d = planted_images(10, task="single", null_fraction=0.0, generator=7)
    m = d.pixel_mask()
    assert m.shape == (10, 32, 32) and (m.flatten(1).sum(1) == 16).all()
    sub = d.subset(slice(2, 5))
    assert len(sub) == 3 and torch.equal(sub.images, d.images[2:5]) and sub.task == "single"


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [({"task": "xor"}, "The 'task' parameter of planted_images must be one of"),
     ({"n": 0}, "The 'n' parameter of planted_images must be an int in [1, inf). Got 0 instead."),
     ({"null_fraction": 1.5}, "The 'null_fraction' parameter of planted_images must be a float in [0, 1]"),
     ({"n_distractors": 63}, "The 'n_distractors' parameter of planted_images must be at most"),
     ({"texture_size": 5}, "The 'texture_size' parameter of planted_images must be an int in [2, cell_size]"),
     ({"brightness": (0.9, 0.5)}, "The 'brightness' parameter of planted_images must be a pair")],
)
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError) as e:
        planted_images(**{"n": 4, **kwargs})
    assert msg in str(e.value)
