"""Transformer pieces for the policies: a cheaper dropout on the CPU and a CVAE encoder that stops at its CLS token.

Both compute what torch's modules compute (the same parameters, the same function); they only skip work:

- `Dropout`: on the CPU, `nn.Dropout` draws one Bernoulli sample per element, which costs more than the matmul
  that produced the tensor (~20 ns per element against ~10 for a 256 → 1024 linear, one thread). This one draws
  64 random bits per 4 elements from torch's generator (so `torch.manual_seed` and checkpointed RNG states still
  decide the masks) and keeps an element when its 16 bits are ≥ round(p · 2¹⁶): the drop probability is p to
  within 2⁻¹⁷. On CUDA it is `F.dropout`, which is fused and fast there.
- `encode_cls`: ACT's CVAE encoder only reads its CLS token's output, so in the last layer only that token needs a
  query, the output projection, the feed-forward block and the norms; keys and values still come from every token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Dropout(nn.Module):
    """`nn.Dropout(p)` with a faster mask on the CPU (see the module docstring); identity in eval mode."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self._threshold = round(self.p * 65536) - 32768  # compare as int16: keep when bits >= threshold

    def forward(self, x: Tensor) -> Tensor:
        """Input with each element zeroed with probability p and the rest scaled by 1 / (1 - p) (training mode)."""
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        n = x.numel()
        bits = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)  # 4 x 16 bits each
        mask = (bits.view(torch.int16)[:n] >= self._threshold).view(x.shape).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * mask  # autograd keeps the mask for the backward pass

    def extra_repr(self) -> str:
        """Shown in the module's repr."""
        return f"p={self.p}"


def use_fast_dropout(module: nn.Module) -> nn.Module:
    """Replace every `nn.Dropout` submodule of `module` by `Dropout` with the same p (no parameters change)."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, Dropout(child.p))
        else:
            use_fast_dropout(child)
    return module


def encode_cls(encoder: nn.TransformerEncoder, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
    """`encoder(x, src_key_padding_mask=...)[:, 0]` (B, d): the CLS token's output of a batch-first post-norm encoder.

    The last layer's outputs at the other tokens are not computed.
    """
    *first, last = encoder.layers
    for layer in first:
        x = layer(x, src_key_padding_mask=key_padding_mask)
    if last.norm_first or not last.self_attn.batch_first:
        raise ValueError("encode_cls handles batch-first post-norm encoder layers")
    q = x[:, :1]
    sa = last.self_attn(q, x, x, key_padding_mask=key_padding_mask, need_weights=False)[0]
    h = last.norm1(q + last.dropout1(sa))
    h = last.norm2(h + last.dropout2(last.linear2(last.dropout(last.activation(last.linear1(h))))))
    if encoder.norm is not None:
        h = encoder.norm(h)
    return h[:, 0]
