"""The model zoo: small networks shared by every study. Extend it here rather than defining models in a study."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Sequential):
    """Fully connected ReLU network ``sizes[0] -> ... -> sizes[-1]`` (no activation after the last layer)."""

    def __init__(self, sizes: tuple[int, ...] | list[int]) -> None:
        if len(sizes) < 2:
            raise ValueError(f"The 'sizes' parameter of MLP needs at least 2 entries. Got {list(sizes)!r} instead.")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class BatchedMLP(nn.Module):
    """``R`` independent :class:`MLP` s with the same ``sizes``, evaluated together with batched matmuls.

    Member ``r`` is initialised exactly as ``MLP(sizes)`` built right after ``torch.manual_seed(seeds[r])`` (the
    global RNG is forked, not touched). Layer ``k`` holds ``weights[k]`` of shape (R, out, in) and ``biases[k]``
    of shape (R, out). ``forward`` maps (R, B, d) to (R, B, C); a 2-D input (B, d) is fed to every member. Each
    member's output depends only on its own parameters, so a loss that sums member losses gives each member its own
    gradient (used by P21 to train a whole family of runs at once, see ``training.fit``).
    """

    def __init__(self, sizes: tuple[int, ...] | list[int], seeds: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        if len(seeds) < 1:
            raise ValueError(f"The 'seeds' parameter of BatchedMLP needs at least 1 entry. Got {list(seeds)!r}.")
        members = []
        for s in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(s))
                members.append(MLP(sizes))
        self._load(members)

    @classmethod
    def from_mlps(cls, mlps: list[MLP]) -> BatchedMLP:
        """Stack copies of existing MLPs (all with the same layer sizes) into one batched model."""
        if len(mlps) < 1:
            raise ValueError("The 'mlps' parameter of BatchedMLP.from_mlps needs at least 1 model. Got 0.")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._load(list(mlps))
        return self

    def _load(self, members: list[MLP]) -> None:
        linears = [[m for m in mlp if isinstance(m, nn.Linear)] for mlp in members]
        self.sizes = tuple([linears[0][0].in_features] + [lin.out_features for lin in linears[0]])
        self.n_members = len(members)
        depth = len(linears[0])
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([ls[k].weight.detach() for ls in linears]).clone()) for k in range(depth)]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([ls[k].bias.detach() for ls in linears]).clone()) for k in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (B, d): the same inputs for every member
            x = x.unsqueeze(0).expand(self.n_members, -1, -1)
        if x.dim() != 3 or x.shape[0] != self.n_members:
            raise ValueError(f"BatchedMLP expects inputs of shape (B, d) or ({self.n_members}, B, d). "
                             f"Got {tuple(x.shape)} instead.")
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))  # (R, B, in) @ (R, in, out) -> (R, B, out)
            if k < last:
                x = torch.relu_(x)  # in place is safe: baddbmm's backward needs its inputs, not its output
        return x

    def member(self, r: int) -> MLP:
        """A standalone copy of member ``r`` as an :class:`MLP`."""
        with torch.random.fork_rng(devices=[]):  # its random init is overwritten: leave the global RNG alone
            mlp = MLP(self.sizes)
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for k, lin in enumerate(linears):
                lin.weight.copy_(self.weights[k][r])
                lin.bias.copy_(self.biases[k][r])
        return mlp.to(self.weights[0].device)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks and a linear head for small images (N, C, H, W).

    ``pool="avg"`` ends with global average pooling; ``pool="max"`` with global max pooling (so that either of two
    redundant pieces of evidence can carry the score alone, as P46's OR task needs); ``pool="flatten"`` keeps
    the spatial map (conv16-conv32-fc64-fc10 for digits, as P39's design asks).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        channels: tuple[int, int] = (16, 32),
        pool: str = "avg",
        image_size: int = 8,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        if pool not in ("avg", "max", "flatten"):
            raise ValueError(f"The 'pool' parameter of SmallCNN must be one of 'avg', 'max', 'flatten'. Got {pool!r}.")
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = pool
        if pool == "flatten":
            self.fc1 = nn.Linear(c2 * image_size * image_size, hidden)
            self.fc2 = nn.Linear(hidden, n_classes)
        else:
            self.fc = nn.Linear(c2, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, (N, c2, H, W)."""
        return self.act(self.conv2(self.act(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if self.pool == "avg":
            return self.fc(h.mean(dim=(2, 3)))
        if self.pool == "max":
            return self.fc(h.amax(dim=(2, 3)))
        return self.fc2(self.act(self.fc1(h.flatten(1))))


class ConvNet(nn.Module):
    """A stack of 3x3 conv + ReLU layers (``channels``), 2x2 max pooling after the convs listed in ``pool_after``,
    then a linear head: on the flattened last feature map when ``image_size`` is given (its side shrinks to
    image_size // 2**len(pool_after)), on its global average otherwise. (N, C, H, W) → (N, n_classes).

    ``ConvNet(channels=(32, 64, 64), pool_after=(0, 1), image_size=8)`` is P22's 3-conv + FC CNN for digits. Any
    channel counts are allowed, which is what structured pruning needs: removing output channels of conv i builds a
    ``ConvNet`` with fewer channels.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        channels: tuple[int, ...] = (32, 64, 64),
        pool_after: tuple[int, ...] = (1,),
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"The 'channels' parameter of ConvNet needs positive entries. Got {channels!r} instead.")
        if any(not 0 <= i < len(channels) for i in pool_after):
            raise ValueError(f"The 'pool_after' parameter of ConvNet must index the convs. Got {pool_after!r}.")
        self.channels, self.pool_after, self.image_size = tuple(channels), tuple(pool_after), image_size
        sizes = (in_channels,) + self.channels
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(sizes[:-1], sizes[1:]))
        self.spatial = 1 if image_size is None else (image_size // 2 ** len(self.pool_after)) ** 2
        if self.spatial < 1:
            raise ValueError(f"The 'image_size' parameter of ConvNet is too small for {len(pool_after)} poolings. "
                             f"Got {image_size!r}.")
        self.fc = nn.Linear(self.channels[-1] * self.spatial, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x))
            if i in self.pool_after:
                x = nn.functional.max_pool2d(x, 2)
        if self.image_size is None:
            return self.fc(x.mean(dim=(2, 3)))  # (N, C_last) after global average pooling
        return self.fc(x.flatten(1))  # (N, C_last · h · w), channel-major: channel c owns columns c·hw ... c·hw+hw−1
