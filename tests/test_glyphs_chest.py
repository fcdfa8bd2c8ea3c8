"""The glyph generator (P65): seeded, boxes around the target glyph, distractors outside them."""

from __future__ import annotations

import pytest
import torch

from nnsens.data.glyphs import glyph_images


def test_glyphs_are_seeded_and_in_range():
    a, b = glyph_images(20, generator=3), glyph_images(20, generator=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.images, glyph_images(20, generator=4).images)
    assert a.images.shape == (20, 1, 32, 32) and a.images.min() >= 0 and a.images.max() <= 1
    assert set(a.labels.tolist()) <= set(range(10))


def test_boxes_hold_the_strokes_and_distractors_stay_outside():
    d = glyph_images(200, generator=0)
    box = d.box_masks()
    assert (d.strokes & ~box).sum() == 0  # every stroke pixel is inside the target's box
    assert torch.equal(d.stroke_pixels, d.strokes.sum((1, 2)))
    side = (d.boxes[:, 2:] - d.boxes[:, :2]).amax(1)
    assert side.min() >= 5 and side.max() <= 20
    share = d.has_distractor.float().mean().item()
    assert 0.15 < share < 0.45
    for i in torch.nonzero(d.has_distractor)[:, 0].tolist():
        t, o = d.boxes[i], d.distractor_boxes[i]
        assert o[2] <= t[0] or o[0] >= t[2] or o[3] <= t[1] or o[1] >= t[3]
    # the target glyph is the bright one: its strokes are brighter than anything the background reaches
    assert d.images[:, 0][d.strokes].mean() > d.images[:, 0][~box].mean() + 0.4


def test_train_and_test_glyphs_are_disjoint_halves():
    from nnsens.data.glyphs import _glyph_bank

    tr, te = _glyph_bank("train")[0], _glyph_bank("test")[0]
    assert len(tr) + len(te) == 1797


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [({"n": 0}, "'n' parameter"), ({"n": 2, "split": "val"}, "'split' parameter"),
     ({"n": 2, "scale": (0.6, 3.0)}, "'scale' parameter"), ({"n": 2, "distractor_prob": 1.5}, "'distractor_prob'")],
)
def test_glyph_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        glyph_images(**kwargs)
