"""Pruning tools: exact sparsity, masks kept through fine-tuning, structured removal = masking, k-means sharing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnsens.methods.pruning import (
    apply_masks,
    chain_pairs,
    channel_masks,
    fine_tune,
    kmeans_share,
    magnitude_scores,
    masks_applied,
    masks_from_scores,
    model_sparsity,
    prunable,
    remove_channels,
    select_channels,
    sparsity_of,
)
from nnsens.models import MLP, ConvNet, SmallCNN
from nnsens.training import predict


def _mlp(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP((12, 20, 16, 5))


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9, 1.0])
def test_masks_hit_the_requested_sparsity_exactly(scope, sparsity):
    net = _mlp()
    scores = magnitude_scores(net)
    masks = masks_from_scores(scores, sparsity, scope=scope)
    if scope == "global":
        n = sum(s.numel() for s in scores.values())
        assert sum(int((~m).sum()) for m in masks.values()) == round(sparsity * n)
    else:
        for m in masks.values():
            assert int((~m).sum()) == round(sparsity * m.numel())
    # the pruned entries are the lowest-scoring ones
    if 0 < sparsity < 1 and scope == "global":
        flat_s = torch.cat([s.reshape(-1) for s in scores.values()])
        flat_m = torch.cat([m.reshape(-1) for m in masks.values()])
        assert flat_s[~flat_m].max() <= flat_s[flat_m].min()


def test_ties_do_not_break_exactness():
    scores = {"a": torch.zeros(10), "b": torch.zeros(7)}
    m = masks_from_scores(scores, 0.5)
    assert sum(int((~v).sum()) for v in m.values()) == round(0.5 * 17)


def test_masked_weights_stay_zero_through_fine_tuning():
    net = _mlp()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 12, generator=gen), torch.randint(0, 5, (64,), generator=gen)
    masks = masks_from_scores(magnitude_scores(net), 0.8)
    apply_masks(net, masks)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    names = [k for k, _ in net.named_parameters()]
    fine_tune(net, masks, x, y, epochs=3, batch_size=16, lr=1e-2, weight_decay=1e-3, generator=0)
    assert [k for k, _ in net.named_parameters()] == names  # parametrization removed on exit
    assert not any(parametrized for parametrized in [hasattr(m, "parametrizations") for m in net.modules()])
    named = dict(net.named_parameters())
    for k, m in masks.items():
        assert (named[k][~m] == 0).all()
        assert not torch.equal(named[k][m], before[k][m])  # the survivors did train
    assert model_sparsity(net) == pytest.approx(sparsity_of(masks))


def test_masks_applied_also_holds_with_sgd_momentum():
    net = _mlp(1)
    masks = masks_from_scores(magnitude_scores(net), 0.5, scope="layerwise")
    x, y = torch.randn(32, 12), torch.randint(0, 5, (32,))
    with masks_applied(net, masks):
        from nnsens.training import fit

        fit(net, x, y, epochs=2, batch_size=8, lr=0.1, optimizer="sgd", generator=1)
    named = dict(net.named_parameters())
    assert all((named[k][~m] == 0).all() for k, m in masks.items())


def test_structured_removal_equals_masking_mlp():
    net = _mlp()
    keep = {"0": torch.tensor([1, 3, 4, 10, 19]), "2": torch.tensor([0, 2, 15])}
    small = remove_channels(net, keep)
    assert small[0].out_features == 5 and small[2].in_features == 5 and small[2].out_features == 3
    assert small[4].in_features == 3
    masked = apply_masks(__import__("copy").deepcopy(net), channel_masks(net, keep))
    x = torch.randn(50, 12)
    torch.testing.assert_close(predict(small, x), predict(masked, x))
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())
    assert net[0].out_features == 20  # the original is untouched


@pytest.mark.parametrize("pool", ["flatten", "avg"])
def test_structured_removal_equals_masking_cnn(pool):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SmallCNN(pool=pool, image_size=8, channels=(6, 8), hidden=12)
    pairs = chain_pairs(net)
    assert pairs[0] == ("conv1", "conv2")
    keep = {"conv1": [0, 2, 5], "conv2": [1, 3, 4, 7]}
    small = remove_channels(net, keep)
    masked = apply_masks(__import__("copy").deepcopy(net), channel_masks(net, keep))
    x = torch.randn(7, 1, 8, 8)
    torch.testing.assert_close(predict(small, x), predict(masked, x))
    assert small.conv2.out_channels == 4 and small.conv2.in_channels == 3


@pytest.mark.parametrize("image_size", [None, 8])
def test_structured_removal_of_a_convnet_equals_zeroing_the_channels(image_size):
    """ConvNet: max pooling between convs, a flatten (channel-major blocks of columns) or global-average head."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = ConvNet(channels=(4, 6, 5), pool_after=(0, 1), image_size=image_size).double()
    assert chain_pairs(net) == [("convs.0", "convs.1"), ("convs.1", "convs.2"), ("convs.2", "fc")]
    x = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    alive = {"convs.0.weight": [1, 0, 1, 1], "convs.1.weight": [0, 1, 1, 0, 1, 1], "convs.2.weight": [1, 1, 0, 1, 0]}
    keep = {n: torch.nonzero(torch.tensor(a)).reshape(-1) for n, a in alive.items()}  # weight names as keys
    rng = torch.random.get_rng_state()
    small = remove_channels(net, keep)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the global RNG is left alone
    assert isinstance(small, ConvNet) and small.channels == (3, 4, 3) and net.channels == (4, 6, 5)
    assert small.fc.in_features == 3 * net.spatial
    by_module = remove_channels(net, {n.removesuffix(".weight"): k for n, k in keep.items()})
    assert all(torch.equal(a, b) for a, b in zip(small.parameters(), by_module.parameters(), strict=True))
    masked = apply_masks(__import__("copy").deepcopy(net), channel_masks(net, keep))
    with torch.no_grad():  # the same function as the dense net with those channels' weights and biases zeroed
        torch.testing.assert_close(small(x), masked(x))
        for i, conv in enumerate(net.convs):
            dead = torch.tensor(alive[f"convs.{i}.weight"]) == 0
            conv.weight[dead] = 0
            conv.bias[dead] = 0
        torch.testing.assert_close(small(x), net(x))
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())
    partial = remove_channels(net, {"convs.1": [0, 2]})  # layers not named keep all their channels
    assert partial.channels == (4, 2, 5) and partial.convs[2].in_channels == 2


def test_select_channels_global_threshold_and_cap_on_numpy_scores():
    scores = {"a": np.array([0.1, 0.2, 5.0, 6.0]), "b": np.array([1.0, 2.0, 3.0, 4.0, 0.05, 7.0])}
    keep = select_channels(scores, 0.3)  # 3 of 10 channels, the three lowest overall
    assert keep["a"].tolist() == [2, 3] and keep["b"].tolist() == [0, 1, 2, 3, 5]
    # with a 50 % cap, layer a loses at most 2 channels: the fourth removal goes to b's next-lowest
    keep = select_channels({"a": np.array([0.1, 0.2, 0.3, 9.0]), "b": np.arange(1.0, 7.0)}, 0.4, max_per_layer=0.5)
    assert keep["a"].tolist() == [2, 3] and keep["b"].tolist() == [2, 3, 4, 5]
    # ties go by layer order, then channel index: a0, a1, (a2: a's cap of floor(0.9 · 3) = 2 is reached), b0
    keep = select_channels({"a": np.ones(3), "b": np.ones(3)}, 0.5)
    assert keep["a"].tolist() == [2] and keep["b"].tolist() == [1, 2]


def test_select_channels_global_with_cap_and_layerwise():
    scores = {"a": torch.tensor([0.1, 0.2, 0.3, 0.4]), "b": torch.tensor([5.0, 6.0, 7.0, 8.0])}
    keep = select_channels(scores, 0.5, max_per_layer=0.5)  # 4 to remove, at most 2 per layer
    assert keep["a"].tolist() == [2, 3] and keep["b"].tolist() == [2, 3]
    keep = select_channels(scores, 0.25)
    assert keep["a"].tolist() == [2, 3] and keep["b"].tolist() == [0, 1, 2, 3]
    keep = select_channels(scores, 0.5, scope="layerwise")
    assert all(len(v) == 2 for v in keep.values())


def test_kmeans_has_the_requested_number_of_distinct_values():
    net = _mlp()
    shared = kmeans_share(net, 4, generator=0)
    for n in prunable(net):
        assert dict(shared.named_parameters())[n].unique().numel() == 4
    again = kmeans_share(net, 4, generator=0)
    assert all(torch.equal(a, b) for a, b in zip(shared.parameters(), again.parameters(), strict=True))
    assert not torch.equal(net[0].weight, shared[0].weight)  # a copy; the original is untouched
    pruned = apply_masks(_mlp(), masks_from_scores(magnitude_scores(_mlp()), 0.5))
    shared = kmeans_share(pruned, 3)
    w = shared[0].weight
    assert (w == 0).sum() == (pruned[0].weight == 0).sum() and w[w != 0].unique().numel() == 3


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda n: masks_from_scores(magnitude_scores(n), 1.5),
         "The 'sparsity' parameter of masks_from_scores must be a float in [0, 1]. Got 1.5 instead."),
        (lambda n: masks_from_scores(magnitude_scores(n), 0.5, scope="tensor"), "The 'scope' parameter"),
        (lambda n: masks_from_scores({}, 0.5), "must be a non-empty dict"),
        (lambda n: apply_masks(n, {"0.weight": torch.ones(3, 3, dtype=torch.bool)}), "must match the parameters"),
        (lambda n: apply_masks(n, {"zz": torch.ones(1)}), "must name parameters of the model"),
        (lambda n: remove_channels(n, {"0": [0, 0]}), "at least one distinct index in [0, 20)"),
        (lambda n: remove_channels(n, {"0": []}), "The 'keep' parameter of remove_channels"),
        (lambda n: remove_channels(n, {"4": [0]}), "must name producers"),
        (lambda n: kmeans_share(n, 0), "The 'n_clusters' parameter of kmeans_share must be an int in [1, inf)"),
        (lambda n: select_channels({"a": torch.ones(3)}, 0.5, max_per_layer=2.0), "max_per_layer"),
        (lambda n: select_channels({"a": np.ones(3)}, 1.5),
         "The 'ratio' parameter of select_channels must be a float in [0, 1]. Got 1.5 instead."),
        (lambda n: remove_channels(n, {"0": [0], "0.weight": [1]}), "names '0' twice"),
    ],
)
def test_bad_arguments(call, msg):
    with pytest.raises(ValueError) as e:
        call(_mlp())
    assert msg in str(e.value)


def test_prunable_lists_linear_and_conv_weights():
    assert prunable(_mlp()) == ["0.weight", "2.weight", "4.weight"]
    assert prunable(_mlp(), bias=True)[:2] == ["0.weight", "0.bias"]
    assert isinstance(nn.Linear(2, 2), nn.Module)
