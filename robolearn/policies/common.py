"""What ACT and Diffusion Policy share: input features, the normalizer saved inside the policy, the action queue.

A policy is built from `features` (dataset key -> per-frame shape) and the dataset's statistics, so a saved policy
carries everything it needs to run: `describe()` (JSON: kind, config, features) plus `state_dict()` (weights and
normalization buffers) rebuild it with `policy_from_description`. Batches are dicts of dataset keys, as
`WindowDataset` returns them: state `(B, T, D)`, images `(B, T, H, W, C)` uint8, `action` `(B, H, A)`, and
`<key>_is_pad` `(B, T)` masks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robolearn.core.errors import CheckpointError, RobolearnError

ACTION = "action"
IMAGE_PREFIX = "observation.images."


class PolicyInputError(RobolearnError):
    """A dataset, task or observation does not provide what a policy needs (names the key)."""


def is_image(key: str) -> bool:
    """Camera features are `observation.images.<name>` (H, W, C) uint8."""
    return key.startswith(IMAGE_PREFIX)


def resolve_features(store: Any, state_keys: Sequence[str], image_keys: Sequence[str] | None,
                     action_key: str = ACTION) -> dict[str, tuple[int, ...]]:
    """The per-frame shapes of the keys a policy reads from `store`; a missing or misshapen key is an error."""
    feats = store.features
    if image_keys is None:  # default: every camera in the dataset
        image_keys = [k for k in feats if is_image(k)]
    out: dict[str, tuple[int, ...]] = {}
    for key in [*state_keys, *image_keys, action_key]:
        if key not in feats:
            raise PolicyInputError(f"dataset '{store.name}' has no feature '{key}' that the policy needs "
                                   f"(features: {', '.join(feats)})")
        shape = tuple(feats[key].shape)
        if is_image(key):
            if len(shape) != 3 or shape[-1] not in (1, 3):
                raise PolicyInputError(f"dataset '{store.name}' key '{key}': a camera must be (H, W, C) with C in "
                                       f"(1, 3), got {shape}")
        elif len(shape) != 1:
            raise PolicyInputError(f"dataset '{store.name}' key '{key}': expected a vector, got shape {shape}")
        out[key] = shape
    return out


def check_task(features: Mapping[str, tuple[int, ...]], obs_dims: Mapping[str, int], action_dim: int,
               task: str) -> None:
    """Dataset shapes against a task's observation groups and action: a mismatch names the key."""
    for key, shape in features.items():
        if key == ACTION:
            if shape != (action_dim,):
                raise PolicyInputError(f"key 'action': dataset has shape {shape}, task '{task}' acts with "
                                       f"({action_dim},)")
        elif not is_image(key):
            group = key.removeprefix("observation.")
            if group not in obs_dims:
                raise PolicyInputError(f"key '{key}': task '{task}' has no observation group '{group}' "
                                       f"(groups: {', '.join(obs_dims)})")
            if shape != (obs_dims[group],):
                raise PolicyInputError(f"key '{key}': dataset has shape {shape}, task '{task}' observes "
                                       f"({obs_dims[group]},)")


def env_obs(obs: Mapping[str, Any], key: str) -> Tensor | None:
    """The env observation behind a dataset key, or None.

    The naming shared by `robolearn collect` and evaluation rollouts: "observation.<group>" is the group's vector
    (its "state" term when cameras make the group a dict), "observation.images.<cam>" its "rgb_<cam>" term.
    """
    if key in obs:
        return obs[key]
    if is_image(key):
        group = obs.get("policy")
        return group.get("rgb_" + key.removeprefix(IMAGE_PREFIX)) if isinstance(group, Mapping) else None
    value = obs.get(key.removeprefix("observation."))
    return value.get("state") if isinstance(value, Mapping) else value


def obs_to_batch(obs: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Tensor]:
    """Env observation groups {"policy": (N, D) or {"state", "rgb_<cam>"}} -> the dataset keys a policy reads."""
    out = {}
    for key in keys:
        value = env_obs(obs, key)
        if value is None:
            raise PolicyInputError(f"observation has no '{key}' (groups: {', '.join(obs)})")
        out[key] = value
    return out


def _buf(name: str) -> str:
    return name.replace(".", "__")


class Normalizer(nn.Module):
    """Per-key affine normalization from dataset statistics, stored as buffers (saved and exported with the policy).

    mode "mean_std": y = (x - mean) / std; "min_max": y = 2 (x - min) / (max - min) - 1 (to [-1, 1], the range of
    diffusion noise). Images are (…, H, W, C) uint8 with per-channel statistics in stored units (0..255).
    """

    def __init__(self, features: Mapping[str, tuple[int, ...]], modes: Mapping[str, str],
                 stats: Mapping[str, Mapping[str, Any]] | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        self.modes = dict(modes)
        self.eps = eps
        for key, mode in self.modes.items():
            if mode not in ("mean_std", "min_max"):
                raise ValueError(f"normalization mode of '{key}' must be mean_std or min_max, got {mode}")
            dim = features[key][-1]
            scale, shift = torch.ones(dim), torch.zeros(dim)
            if stats is not None:
                if key not in stats:
                    raise PolicyInputError(f"dataset statistics have no key '{key}'; run `robolearn dataset stats`")
                s = {n: torch.as_tensor(np.asarray(v, np.float64), dtype=torch.float64) for n, v in stats[key].items()}
                if mode == "mean_std":
                    shift, scale = s["mean"], s["std"].clamp_min(eps)
                else:
                    shift = (s["max"] + s["min"]) / 2
                    scale = ((s["max"] - s["min"]) / 2).clamp_min(eps)
                if shift.shape != (dim,):
                    raise PolicyInputError(f"statistics of '{key}' have shape {tuple(shift.shape)}, expected ({dim},)")
            self.register_buffer(_buf(key) + "__shift", shift.float())
            self.register_buffer(_buf(key) + "__scale", scale.float())

    def _get(self, key: str) -> tuple[Tensor, Tensor]:
        return getattr(self, _buf(key) + "__shift"), getattr(self, _buf(key) + "__scale")

    def normalize(self, key: str, x: Tensor) -> Tensor:
        """Dataset units -> network units (float32)."""
        shift, scale = self._get(key)
        return (x.float() - shift) / scale

    def unnormalize(self, key: str, y: Tensor) -> Tensor:
        """Network units -> dataset units."""
        shift, scale = self._get(key)
        return y * scale + shift


class ChunkQueue:
    """Batched action chunks -> one action per control step: a receding-horizon queue, or ACT's temporal ensembling.

    Plain: `push((B, H, A))` keeps the first `n_action_steps` actions, `pop()` plays them out, `needs_chunk` asks
    for the next chunk when empty. Ensembling (`ensemble_coef` = m): a chunk every step; the action for step t
    averages the rows of all chunks covering t with w_i = exp(-m i), i = 0 for the oldest, exactly as
    `robolearn.export.runtime.ActionQueue` does for one robot.
    """

    def __init__(self, chunk: int, n_action_steps: int | None = None, ensemble_coef: float | None = None) -> None:
        self.chunk = chunk
        self.n_action_steps = chunk if n_action_steps is None else n_action_steps
        if not 1 <= self.n_action_steps <= chunk:
            raise ValueError(f"n_action_steps must be in 1..{chunk}, got {self.n_action_steps}")
        self.ensemble_coef = ensemble_coef
        self._queue: list[Tensor] = []  # plain: (B, A) actions still to play
        self._chunks: list[Tensor] = []  # ensembling: (B, H, A), oldest first
        self._age: list[int] = []

    @property
    def needs_chunk(self) -> bool:
        """Whether the next `pop` needs a fresh chunk (always when ensembling)."""
        return self.ensemble_coef is not None or not self._queue

    def reset(self) -> None:
        """Drop everything queued (episode start)."""
        self._queue, self._chunks, self._age = [], [], []

    def push(self, chunk: Tensor) -> None:
        """Add a predicted chunk (B, H, A)."""
        if chunk.ndim != 3 or chunk.shape[1] != self.chunk:
            raise ValueError(f"action chunk must be (B, {self.chunk}, A), got {tuple(chunk.shape)}")
        if self.ensemble_coef is None:
            self._queue = list(chunk[:, :self.n_action_steps].unbind(1))
        else:
            self._chunks.append(chunk)
            self._age.append(0)

    def pop(self) -> Tensor:
        """The actions (B, A) for this control step."""
        if self.ensemble_coef is None:
            if not self._queue:
                raise RuntimeError("action queue is empty; push a chunk first")
            return self._queue.pop(0)
        if not self._chunks:
            raise RuntimeError("no action chunk to ensemble; push one first")
        rows = torch.stack([c[:, age] for c, age in zip(self._chunks, self._age, strict=True)])  # (K, B, A)
        w = torch.exp(-self.ensemble_coef * torch.arange(len(rows), dtype=rows.dtype, device=rows.device))  # (K,)
        a = (w[:, None, None] * rows).sum(0) / w.sum()
        self._age = [age + 1 for age in self._age]
        while self._age and self._age[0] >= self.chunk:
            self._age.pop(0)
            self._chunks.pop(0)
        return a


def sinusoidal_embedding(x: Tensor, dim: int) -> Tensor:
    """(…,) positions or timesteps -> (…, dim) sin/cos features (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / max(half, 1))
    args = x.float()[..., None] * freqs
    out = torch.cat([args.sin(), args.cos()], -1)
    return F.pad(out, (0, dim - 2 * half)) if dim % 2 else out


def random_shift(x: Tensor, pad: int) -> Tensor:
    """Random translation by up to `pad` pixels per image (replicate-pad, random crop back); (B, C, H, W)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))  # (B, H)
    cols = (ox[:, None] + torch.arange(w, device=x.device))  # (B, W)
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


POLICY_KINDS = {"act": "robolearn.policies.act:ACTPolicy", "diffusion": "robolearn.policies.diffusion:DiffusionPolicy"}


def policy_class(kind: str) -> Any:
    """The policy class of `kind` (act, diffusion)."""
    import importlib

    if kind not in POLICY_KINDS:
        raise RobolearnError(f"unknown policy kind '{kind}'; known: {', '.join(POLICY_KINDS)}")
    module, name = POLICY_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def policy_from_description(desc: Mapping[str, Any], state: Mapping[str, Tensor] | None = None,
                            expect_kind: str | None = None, where: str = "checkpoint") -> Any:
    """Rebuild a policy from `describe()` (and load `state`); `expect_kind` guards against another policy type."""
    kind = desc.get("kind")
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"{where}: holds a '{kind}' policy, not '{expect_kind}'")
    cls = policy_class(str(kind))
    from robolearn.core.config import from_dict

    cfg = from_dict(cls.config_class, dict(desc["config"]), source=where)
    features = {k: tuple(v) for k, v in desc["features"].items()}
    policy = cls(cfg, features)
    if state is not None:
        policy.load_state_dict(dict(state))
    return policy


def color_jitter(x: Tensor, amount: float) -> Tensor:
    """Random brightness and contrast per image, factors in U(1 - amount, 1 + amount); (N, H, W, C) in 0..255."""
    n = x.shape[0]
    shape = (n,) + (1,) * (x.ndim - 1)
    brightness = 1 + amount * (2 * torch.rand(shape, device=x.device) - 1)
    contrast = 1 + amount * (2 * torch.rand(shape, device=x.device) - 1)
    mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return (((x * brightness) - mean) * contrast + mean).clamp(0, 255)

