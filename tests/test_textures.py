"""The procedural texture–shape world of P58: shapes, ranges, balance, seeding, and that the textures differ."""

from __future__ import annotations

import pytest
import torch

from nnsens.data import textures as tx


@pytest.mark.parametrize("kind", tx.CONCEPTS)
def test_texture_is_binary_seeded_and_not_flat(kind):
    a = tx.texture(kind, 6, 32, generator=1)
    assert a.shape == (6, 32, 32) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, tx.texture(kind, 6, 32, generator=1))
    assert not torch.equal(a, tx.texture(kind, 6, 32, generator=2))
    frac = a.mean((1, 2))
    assert torch.all(frac > 0.05) and torch.all(frac < 0.95)  # both phases present in every image


def test_textures_scale_with_size():
    assert tx.texture("radial", 2, 64, generator=0).shape == (2, 64, 64)


def test_class_images_balanced_in_range_and_seeded():
    x, y = tx.class_images(50, generator=3)
    assert x.shape == (50, 1, 32, 32) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert torch.bincount(y, minlength=5).tolist() == [10] * 5
    x2, y2 = tx.class_images(50, generator=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_concept_and_random_sets():
    c = tx.concept_images("dotted", 7, generator=0)
    r = tx.random_sets(3, 4, generator=0)
    assert c.shape == (7, 1, 32, 32) and r.shape == (3, 4, 1, 32, 32)
    assert 0 <= float(r.min()) and float(r.max()) <= 1
    p = tx.random_patches(5, generator=0)
    assert torch.all(p.std((1, 2)) > 0.02)  # not constant patches


def test_planted_map_and_errors():
    assert tx.PLANTED["zebra"] == "striped" and tx.PLANTED["spider_web"] == "radial"
    with pytest.raises(ValueError, match="The 'kind' parameter of texture must be one of"):
        tx.texture("plaid", 1)
    with pytest.raises(TypeError, match="The 'generator' parameter"):
        tx.texture("dotted", 1, generator=-1)
