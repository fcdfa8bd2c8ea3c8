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


class TinyViT(nn.Module):
    """A small vision transformer: non-overlapping ``patch`` x ``patch`` patch embedding, learned position
    embeddings, ``depth`` pre-norm encoder layers, mean pooling over tokens, a LayerNorm (``self.norm``, whose
    (N, dim) output is the penultimate feature layer) and a linear head. (N, C, H, W) → (N, n_classes).

    ``TinyViT(image_size=32, patch=4, dim=32, depth=2)`` is P07's tiny ViT (64 tokens of 4x4 pixels).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, image_size: int = 32, patch: int = 4,
                 dim: int = 32, depth: int = 2, heads: int = 4, mlp_ratio: int = 2) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"The 'patch' parameter of TinyViT must divide image_size={image_size}. Got {patch!r}.")
        if dim % heads:
            raise ValueError(f"The 'heads' parameter of TinyViT must divide dim={dim}. Got {heads!r} instead.")
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)  # (N, C, H, W) -> (N, dim, H/p, W/p)
        self.pos = nn.Parameter(0.02 * torch.randn(1, (image_size // patch) ** 2, dim))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim_feedforward=mlp_ratio * dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled, normalised token features, (N, dim)."""
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos  # (N, dim, h, w) -> (N, h*w tokens, dim)
        for layer in self.layers:
            h = layer(h)
        return self.norm(h.mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class VGGNet(nn.Module):
    """A VGG-style CNN: 3x3 conv (bias on) + BatchNorm + ReLU blocks (``channels``), 2x2 max pooling after every block
    but the last, and a linear head on the flattened last feature map. (N, C, H, W) → (N, n_classes).

    Only affine layers and ReLU / max pooling modules, so the network is piecewise linear and FullGrad's completeness
    holds exactly in eval mode (P28). ``features[-1]`` is the last block's ReLU, the usual Grad-CAM layer.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, channels: tuple[int, ...] = (8, 16, 32, 32),
                 image_size: int = 32) -> None:
        super().__init__()
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"The 'channels' parameter of VGGNet needs positive entries. Got {channels!r} instead.")
        side = image_size // 2 ** (len(channels) - 1)
        if side < 1:
            raise ValueError(f"The 'image_size' parameter of VGGNet is too small for {len(channels) - 1} poolings. "
                             f"Got {image_size!r} instead.")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip((in_channels, *channels[:-1]), channels)):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels[-1] * side * side, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CamCNN(nn.Module):
    """A four-conv CNN for CAM studies (P47): conv-ReLU x 2, 2x2 max pooling, conv-ReLU x 2 (the CAM layers, at half
    the input side), then a head of 2x2 max pooling, flattening, a hidden ReLU layer and a linear output.

    Every ReLU is its own module, ``relus[i]`` after conv ``i``, so a CAM method can hook any block. The head is
    nonlinear on purpose: after a global-average-pooling + linear head the gradient of a class score with respect to
    the last feature map is a constant of the weights, and gradient smoothing (Smooth Grad-CAM++) could not change
    anything there. ``head="max"`` replaces the 2x2 pooling and flattening by global max pooling (presence of a
    pattern anywhere). (N, C, H, W) → (N, n_classes).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4, channels: tuple[int, int, int, int] = (8, 16, 16, 32),
                 hidden: int = 64, image_size: int = 32, head: str = "flatten") -> None:
        super().__init__()
        if head not in ("flatten", "max"):
            raise ValueError(f"The 'head' parameter of CamCNN must be 'flatten' or 'max'. Got {head!r} instead.")
        self.head = head
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"The 'channels' parameter of CamCNN must hold 4 positive widths. Got {channels!r}.")
        if image_size % 4:
            raise ValueError(f"The 'image_size' parameter of CamCNN must be a multiple of 4. Got {image_size!r}.")
        sizes = (in_channels, *channels)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(sizes[:-1], sizes[1:]))
        self.relus = nn.ModuleList(nn.ReLU() for _ in channels)
        self.fc1 = nn.Linear(channels[-1] * ((image_size // 4) ** 2 if head == "flatten" else 1), hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (conv, relu) in enumerate(zip(self.convs, self.relus)):
            x = relu(conv(x))
            if i == 1:
                x = nn.functional.max_pool2d(x, 2)  # (N, c2, H/2, W/2)
        if self.head == "max":
            x = x.amax(dim=(2, 3))  # (N, c4)
        else:
            x = nn.functional.max_pool2d(x, 2).flatten(1)  # (N, c4 * H/4 * W/4)
        return self.fc2(torch.relu(self.fc1(x)))


# --- P15: 1-D CNNs with BatchNorm for mnist1d (plain, depthwise-separable, residual) ---
def conv_bn1d(c_in: int, c_out: int, kernel: int, *, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A bias-free Conv1d followed by its BatchNorm1d, as one ``nn.Sequential`` (so the pair can be folded)."""
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm1d(c_out),
    )


class _Signal1d(nn.Module):
    """Shared frame: (N, L) or (N, 1, L) signals → body → flatten → linear head."""

    def __init__(self, length: int, n_classes: int, width: int, stride_total: int) -> None:
        super().__init__()
        self.head = nn.Linear(width * -(-length // stride_total), n_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(1)  # (N, L) → (N, 1, L)
        return self.head(self.body(x).flatten(1))  # (N, C · L/4), channel-major


class PlainCNN1d(_Signal1d):
    """Three conv-BN-ReLU layers (kernel 5, then 3 with stride 2 twice) and a linear head: P15's plain CNN."""

    def __init__(self, length: int = 40, n_classes: int = 10, channels: tuple[int, int, int] = (16, 32, 32)) -> None:
        super().__init__(length, n_classes, channels[2], 4)
        c1, c2, c3 = channels
        self.stem = conv_bn1d(1, c1, 5)
        self.conv2 = conv_bn1d(c1, c2, 3, stride=2)
        self.conv3 = conv_bn1d(c2, c3, 3, stride=2)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv3(torch.relu(self.conv2(torch.relu(self.stem(x))))))


class MobileCNN1d(_Signal1d):
    """MobileNet-like: a conv-BN-ReLU stem, then two depthwise-separable blocks (depthwise 3-tap conv with stride 2,
    BN, ReLU; pointwise 1×1 conv, BN, ReLU) and a linear head. Its depthwise filters see one channel each, so
    folding BN into them gives per-channel scales that differ widely (the classic per-tensor int8 failure)."""

    def __init__(self, length: int = 40, n_classes: int = 10, channels: tuple[int, int, int] = (16, 32, 32)) -> None:
        super().__init__(length, n_classes, channels[2], 4)
        c1, c2, c3 = channels
        self.stem = conv_bn1d(1, c1, 5)
        self.dw1, self.pw1 = conv_bn1d(c1, c1, 3, stride=2, groups=c1), conv_bn1d(c1, c2, 1)
        self.dw2, self.pw2 = conv_bn1d(c2, c2, 3, stride=2, groups=c2), conv_bn1d(c2, c3, 1)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.pw1(torch.relu(self.dw1(x))))
        return torch.relu(self.pw2(torch.relu(self.dw2(x))))


class ResBlock1d(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (identity, or a strided 1×1 conv-BN when the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn1d(c_in, c_out, 3, stride=stride)
        self.conv2 = conv_bn1d(c_out, c_out, 3)
        self.short = conv_bn1d(c_in, c_out, 1, stride=stride) if (stride != 1 or c_in != c_out) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.short(x))


class ResCNN1d(_Signal1d):
    """Residual 1-D CNN: a conv-BN-ReLU stem and two residual blocks with stride 2, then a linear head."""

    def __init__(self, length: int = 40, n_classes: int = 10, channels: tuple[int, int, int] = (16, 32, 32)) -> None:
        super().__init__(length, n_classes, channels[2], 4)
        c1, c2, c3 = channels
        self.stem = conv_bn1d(1, c1, 5)
        self.block1, self.block2 = ResBlock1d(c1, c2, 2), ResBlock1d(c2, c3, 2)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(torch.relu(self.stem(x))))


class GapCNN(nn.Module):
    """Conv 3x3 + BatchNorm + ReLU blocks (``channels``), 2x2 max pooling after the blocks in ``pool_after``, global
    average pooling and a linear head: (N, C, H, W) → (N, n_classes). P65's "3 conv + GAP + FC" classifier.

    BatchNorm is what lets this small net learn digits on textured backgrounds in a few epochs (without it the loss
    stays at chance for several epochs). ``convs[i]`` is the i-th conv; ``blocks[i]`` its conv-BN-ReLU block, whose
    output is the natural layer for Grad-CAM and channel attributions.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        channels: tuple[int, ...] = (16, 32, 64),
        pool_after: tuple[int, ...] = (0, 1),
    ) -> None:
        super().__init__()
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"The 'channels' parameter of GapCNN needs positive entries. Got {channels!r} instead.")
        if any(not 0 <= i < len(channels) for i in pool_after):
            raise ValueError(f"The 'pool_after' parameter of GapCNN must index the convs. Got {pool_after!r}.")
        sizes = (in_channels, *channels)
        self.pool_after = tuple(pool_after)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.convs = [blk[0] for blk in self.blocks]
        self.fc = nn.Linear(channels[-1], n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output, (N, C_last, h, w)."""
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.pool_after:
                x = nn.functional.max_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))
