"""A ResNet-18-class image backbone trained from scratch (no download), and spatial-softmax keypoints.

Same layout as torchvision's resnet18 (7x7 stem, max-pool, 4 stages x 2 basic blocks, stride 2 between stages) with
a configurable base width and GroupNorm instead of BatchNorm (small imitation batches; Chi et al. 2023 do the same).
`base_width=64` is ResNet-18's 11.2 M parameters; the policies default to a narrower net for CPU training.
Pretrained weights can be loaded from a local safetensors file with `load_weights`; nothing is downloaded.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c // 4) or 1, c)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.n1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.n2 = _norm(c_out)
        self.down = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        y = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(y)) + self.down(x))


class ResNetBackbone(nn.Module):
    """ResNet-18 layout; `forward` returns the last feature map (B, 8 * base_width, H / 32, W / 32)."""

    def __init__(self, in_channels: int = 3, base_width: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        w = base_width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 7, 2, 3, bias=False), _norm(w), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers: list[nn.Module] = []
        c = w
        for i, n in enumerate(blocks):
            c_out = w * 2**i
            for j in range(n):
                layers.append(BasicBlock(c, c_out, stride=2 if (j == 0 and i > 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) float -> (B, out_channels, h, w)."""
        # images arrive as permuted (B, H, W, C) views; torch 2.13's CPU backward of this stack on such a
        # channels-last input with 4 base channels corrupts the heap (free(): invalid size), so compute in NCHW
        return self.layers(self.stem(x.contiguous()))

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load pretrained weights from a local safetensors file with this module's parameter names."""
        from safetensors.torch import load_file

        self.load_state_dict(load_file(str(path)))


class SpatialSoftmax(nn.Module):
    """Feature map (B, C, h, w) -> (B, 2K) expected image coordinates of K learned keypoints (Levine et al. 2016)."""

    def __init__(self, channels: int, keypoints: int = 32) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, keypoints, 1)
        self.keypoints = keypoints

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, 2K)."""
        b, _, h, w = x.shape
        logits = self.proj(x).flatten(2)  # (B, K, h*w)
        p = logits.softmax(-1)
        ys = torch.linspace(-1, 1, h, device=x.device)
        xs = torch.linspace(-1, 1, w, device=x.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)  # (h*w, 2)
        return (p @ grid).reshape(b, 2 * self.keypoints)  # (B, 2K)
