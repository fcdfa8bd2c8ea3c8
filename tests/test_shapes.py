"""Multi-instance shape canvases (nnsens.data.shapes): shapes, labels, boxes, masks, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnsens.data.shapes import MAX_INSTANCES, SHAPES, shape_canvases, shape_mask


@pytest.fixture(scope="module")
def data():
    return shape_canvases(60, generator=3)


def test_shapes_are_distinct_and_filled():
    masks = {k: shape_mask(k, 9) for k in SHAPES}
    assert all(m.shape == (9, 9) and m.any() for m in masks.values())
    for a in SHAPES:
        for b in SHAPES:
            if a != b:
                assert (masks[a] != masks[b]).sum() >= 9
    assert shape_mask("bar", 9, vertical=True).T.tolist() == shape_mask("bar", 9).tolist()


def test_labels_counts_and_instances_agree(data):
    n = len(data)
    assert data.images.shape == (n, 1, 32, 32) and 0 <= data.images.min() and data.images.max() <= 1
    for c in range(len(SHAPES)):
        assert torch.equal(data.counts[:, c], (data.classes == c).sum(1))
    assert torch.equal(data.labels, (data.counts > 0).float())
    main = data.counts.gather(1, data.main[:, None])[:, 0]
    assert main.min() >= 1 and main.max() <= MAX_INSTANCES and (data.classes >= 0).sum(1).max() <= MAX_INSTANCES
    assert set(main.tolist()) == {1, 2, 3}


def test_boxes_are_tight_disjoint_and_hold_the_masks(data):
    for i in range(len(data)):
        used = data.classes[i] >= 0
        for j in used.nonzero()[:, 0].tolist():
            top, left, bottom, right = data.boxes[i, j].tolist()
            m = data.masks[i, j]
            rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
            assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (top, bottom, left, right)
        inst = data.masks[i, used]
        assert inst.sum(0).max() <= 1  # instances never overlap
    bm = data.box_masks(data.main)
    n_boxes = bm.flatten(2).any(2).sum(1)
    assert torch.equal(n_boxes, data.counts.gather(1, data.main[:, None])[:, 0])


def test_instances_are_brighter_than_the_background(data):
    inst = data.masks.any(1)[:, None]
    assert data.images[inst].min() >= 0.6 - 1e-6
    assert data.images[~inst].mean() < 0.2


def test_seeding_and_subset():
    a, b = shape_canvases(5, generator=7), shape_canvases(5, generator=7)
    assert torch.equal(a.images, b.images) and torch.equal(a.boxes, b.boxes)
    c = shape_canvases(5, generator=np.random.default_rng(8))
    assert not torch.equal(a.images, c.images)
    sub = a.subset(slice(1, 3))
    assert len(sub) == 2 and torch.equal(sub.masks, a.masks[1:3])


@pytest.mark.parametrize(("kwargs", "name"), [({"n": 0}, "n"), ({"size_range": (3, 8)}, "size_range"),
                                               ({"other_fraction": 1.5}, "other_fraction")])
def test_validation(kwargs, name):
    args = {"n": 2, **kwargs}
    with pytest.raises(ValueError, match=f"'{name}' parameter of shape_canvases"):
        shape_canvases(**args)
