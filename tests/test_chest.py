"""The synthetic chest images of P25: labels, marker rates, common random numbers across rho, masking spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnsens.data.chest import ELLIPSE_3X3, IMAGE_TYPES, chest_images, keep_mask, mask_images, roi_boxes, spread_roi


@pytest.fixture(scope="module")
def data():
    return chest_images(600, rho=0.6, seed=3)


def test_shapes_balance_and_marker_rates(data):
    y = data.labels.numpy()
    assert data.images.shape == (600, 1, 48, 48) and data.images.dtype == torch.float32
    assert y.mean() == 0.5 and data.roi.shape == data.marker.shape == (600, 48, 48)
    assert abs(data.has_marker[y == 1].mean() - 0.8) < 0.06 and abs(data.has_marker[y == 0].mean() - 0.2) < 0.06
    assert not (data.marker & spread_roi(data.roi, 3)).any()  # the marker stays outside the largest spread ROI
    assert set(np.unique(data.marker[data.has_marker].sum(axis=(1, 2)))) == {9}


def test_same_seed_same_images_and_nested_markers_across_rho(data):
    again = chest_images(600, rho=0.6, seed=3)
    assert torch.equal(again.images, data.images)
    d0 = chest_images(600, rho=0.0, seed=3)
    assert np.array_equal(d0.roi, data.roi) and torch.equal(d0.labels, data.labels)
    pos = data.labels.numpy() == 1
    assert np.all(d0.has_marker[pos] <= data.has_marker[pos])  # positives: more markers at larger rho
    assert np.all(d0.has_marker[~pos] >= data.has_marker[~pos])
    same = ~(d0.has_marker ^ data.has_marker)
    assert torch.equal(d0.images[same], data.images[same])


def test_lesion_only_in_positives_inside_the_lungs():
    a = chest_images(200, rho=0.0, lesion_amplitude=0.0, noise=0.0, seed=1)
    b = chest_images(200, rho=0.0, lesion_amplitude=1.0, noise=0.0, seed=1)
    diff = (b.images - a.images)[:, 0].numpy()
    y = a.labels.numpy()
    assert np.all(diff[y == 0] == 0)
    peak = diff[y == 1].reshape((y == 1).sum(), -1).argmax(1)
    assert np.all(a.roi[y == 1].reshape((y == 1).sum(), -1)[np.arange(len(peak)), peak])


def test_spread_matches_one_image_at_a_time(data):
    from scipy import ndimage

    for k in (-2, 1, 3):
        batch = spread_roi(data.roi[:4], k)
        op = ndimage.binary_dilation if k > 0 else ndimage.binary_erosion
        for i in range(4):
            assert np.array_equal(batch[i], op(data.roi[i], ELLIPSE_3X3, iterations=abs(k)))
    assert spread_roi(data.roi[:4], -1).sum() < data.roi[:4].sum() < spread_roi(data.roi[:4], 1).sum()


def test_five_types_partition_the_image(data):
    roi = data.roi[:5]
    full = keep_mask(roi, "full")
    assert full.all()
    assert np.array_equal(keep_mask(roi, "no_roi"), ~keep_mask(roi, "only_roi"))
    assert np.array_equal(keep_mask(roi, "no_roi_bbox"), ~keep_mask(roi, "only_roi_bbox"))
    assert np.all(keep_mask(roi, "only_roi") <= keep_mask(roi, "only_roi_bbox"))
    assert np.array_equal(keep_mask(roi, "only_roi", 2), spread_roi(roi, 2))
    assert np.all(roi_boxes(roi) >= roi)
    masked = mask_images(data.images[:5], roi, "no_roi")
    assert torch.all(masked[:, 0][torch.from_numpy(roi)] == 0)
    assert len(IMAGE_TYPES) == 5


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"rho": 1.5}, "The 'rho' parameter of chest_images must be a float in [-1, 1]. Got 1.5 instead."),
        ({"size": 16}, "The 'size' parameter of chest_images must be an int >= 32. Got 16 instead."),
        ({"lesion_amplitude": -1.0}, "The 'lesion_amplitude' parameter of chest_images"),
    ],
)
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError) as err:
        chest_images(10, **kw)
    assert msg in str(err.value)
    with pytest.raises(ValueError, match="'kind' parameter of keep_mask"):
        keep_mask(np.zeros((1, 4, 4), bool), "lungs")
