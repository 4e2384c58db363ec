"""The transformer pieces in robolearn/policies/layers.py compute what torch's modules compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robolearn.policies.act import ACTConfig, ACTPolicy
from robolearn.policies.layers import Dropout, encode_cls, use_fast_dropout


def test_encode_cls_is_the_cls_output_of_the_full_encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, 0.1, batch_first=True)
    enc = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    x = torch.randn(5, 9, 32, requires_grad=True)
    pad = torch.zeros(5, 9, dtype=torch.bool)
    pad[:, 6:] = True  # padded tokens must be ignored as keys in the last layer too
    full = enc(x, src_key_padding_mask=pad)[:, 0]
    cls = encode_cls(enc, x, pad)
    torch.testing.assert_close(cls, full, rtol=1e-5, atol=1e-5)
    (g_full,) = torch.autograd.grad(full.square().sum(), x)
    (g_cls,) = torch.autograd.grad(cls.square().sum(), x)
    torch.testing.assert_close(g_cls, g_full, rtol=1e-4, atol=1e-5)


def test_encode_cls_refuses_pre_norm_layers():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, norm_first=True)
    with pytest.raises(ValueError, match="post-norm"):
        encode_cls(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), torch.randn(2, 3, 8))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_drops_p_and_scales_the_rest(p):
    d = Dropout(p).train()
    x = torch.ones(1000, 1000, requires_grad=True)
    y = d(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.002  # 1e6 draws: std of the fraction ~ 5e-4
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / (1 - p))  # the gradient goes through the same mask


def test_dropout_follows_torch_seed_and_is_identity_in_eval():
    d = Dropout(0.1).train()
    x = torch.randn(64, 33)  # not a multiple of 4 elements per row
    torch.manual_seed(3)
    a = d(x)
    torch.manual_seed(3)
    assert torch.equal(d(x), a)
    assert not torch.equal(d(x), a)
    assert torch.equal(d.eval()(x), x)
    with pytest.raises(ValueError):
        Dropout(1.0)


def test_act_uses_the_fast_dropout_without_changing_its_parameters():
    feats = {"observation.policy": (6,), "action": (2,)}
    policy = ACTPolicy(ACTConfig(dim_model=32, n_heads=2, dim_feedforward=64, chunk_size=4), feats)
    assert not any(type(m) is nn.Dropout for m in policy.modules())
    assert sum(isinstance(m, Dropout) for m in policy.modules()) > 0
    plain = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, 0.1, batch_first=True), 2,
                                  enable_nested_tensor=False)
    keys = set(plain.state_dict())
    assert set(use_fast_dropout(plain).state_dict()) == keys
