"""Running observation normalization that is saved with (and exported inside) the policy."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EmpiricalNormalizer(nn.Module):
    """y = clip((x - mean) / (std + eps)); statistics updated from batches until `until` samples were seen."""

    def __init__(self, dim: int, eps: float = 1e-2, clip: float = 10.0, until: int | None = None) -> None:
        super().__init__()
        self.eps, self.clip, self.until = eps, clip, until
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @property
    def std(self) -> Tensor:
        """Standard deviation used for scaling."""
        return self.var.sqrt()

    def forward(self, x: Tensor) -> Tensor:
        """Normalize (B, D)."""
        return ((x - self.mean) / (self.std + self.eps)).clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge the statistics of a batch (B, D) (Chan et al. parallel variance)."""
        if self.until is not None and self.count >= self.until:
            return
        n = x.shape[0]
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        total = self.count + n
        w = (n / total).to(x.dtype)
        delta = batch_mean - self.mean
        self.mean += w * delta
        # M2 = M2_a + M2_b + δ² n_a n_b / n
        self.var.copy_(self.var * (1 - w) + batch_var * w + delta.square() * w * (1 - w))
        self.count.copy_(total)
