"""Diffusion Policy (Chi et al. 2023): a 1-D temporal U-Net, FiLM-conditioned on observations, denoises actions.

Training (`forward`): actions a⁰ (H, A) in [-1, 1] (min-max normalized), noise ε ~ N(0, I), timestep k ~ U{0..K-1},
a^k = √ᾱ_k a⁰ + √(1-ᾱ_k) ε (diffusers' DDPMScheduler.add_noise); the U-Net predicts ε from (a^k, k, obs):

    loss = mean_{t not padded} ‖ε_θ(a^k, k, o) - ε‖²

Inference (`predict_action_chunk`): start from N(0, I) and run the configured sampler (`sampler: ddpm` with all
K steps, or `ddim` with `num_inference_steps`, e.g. 10 or 3) with the EMA weights. Receding horizon: of the H
predicted actions (which start at the oldest observation), the `n_action_steps` from the current step are
executed, then a new sequence is predicted from the newest observations.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robolearn.core.errors import require
from robolearn.networks.resnet import ResNetBackbone, SpatialSoftmax
from robolearn.policies.common import (
    ACTION,
    ChunkQueue,
    Normalizer,
    PolicyInputError,
    color_jitter,
    is_image,
    obs_to_batch,
    random_shift,
    sinusoidal_embedding,
)


@dataclass(kw_only=True)
class DiffusionConfig:
    """Diffusion Policy hyperparameters (defaults: CPU-sized U-Net; the paper uses down_dims (512, 1024, 2048))."""

    state_keys: tuple[str, ...] = ("observation.policy",)
    """Dataset keys of proprioceptive/state vectors, concatenated."""
    image_keys: tuple[str, ...] | None = None
    """Camera keys (observation.images.*); None: every camera in the dataset."""
    n_obs_steps: int = 2
    """Observation history length (To)."""
    state_norm: str = "min_max"
    """Normalization of the state inputs: min_max (to [-1, 1], Chi et al.) or mean_std (actions are always min_max)."""
    horizon: int = 16
    """Predicted action sequence length (H), starting at the oldest observation step."""
    n_action_steps: int = 8
    """Actions executed per prediction (receding horizon)."""
    denoiser: str = "unet"
    """Noise-prediction network: unet (1-D temporal U-Net, FiLM) or transformer (Chi et al.'s time-series
    transformer: action tokens cross-attend to [timestep, observation] tokens)."""
    down_dims: tuple[int, ...] = (64, 128, 256)
    """U-Net channels per level."""
    kernel_size: int = 5
    n_groups: int = 8
    timestep_embed_dim: int = 128
    transformer_dim: int = 128
    transformer_heads: int = 4
    transformer_layers: int = 4
    transformer_dropout: float = 0.0
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    sampler: str = "ddim"
    """Inference sampler: ddpm (all num_train_timesteps steps) or ddim (num_inference_steps)."""
    num_inference_steps: int = 10
    backbone_width: int = 16
    """Base width of the ResNet-18-class camera backbone (64 = ResNet-18)."""
    backbone_weights: str | None = None
    spatial_keypoints: int = 32
    image_shift: int = 4
    """Training augmentation: random shift of camera images by up to this many pixels (0: off)."""
    color_jitter: float = 0.0
    """Training augmentation: random brightness and contrast factors in 1 ± this (0: off)."""
    ema_power: float = 0.75
    """EMA decay warm-up: decay_k = min(ema_max, 1 - (1 + k)^-power) (Chi et al.'s schedule with inv_gamma = 1)."""
    ema_max: float = 0.9999
    use_ema: bool = True
    lr: float = 1e-4
    weight_decay: float = 1e-6


class _FiLMBlock(nn.Module):
    """Conv1d-GroupNorm-Mish x2 with a residual; the condition sets a per-channel scale and bias (FiLM)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out),
                                   nn.Mish())
        self.conv2 = nn.Sequential(nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out),
                                   nn.Mish())
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.res = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """X (B, C_in, T), cond (B, cond_dim) -> (B, C_out, T)."""
        scale, bias = self.film(cond)[..., None].chunk(2, 1)  # (B, C_out, 1) each
        y = self.conv1(x) * scale + bias  # FiLM: y = γ(c) ⊙ h + β(c)
        return self.conv2(y) + self.res(x)


class ConditionalUnet1D(nn.Module):
    """Temporal U-Net over (B, T, A) sequences, conditioned on the diffusion step and a global vector."""

    def __init__(self, action_dim: int, global_cond_dim: int, down_dims: tuple[int, ...], kernel: int, groups: int,
                 t_dim: int) -> None:
        super().__init__()
        self.t_dim = t_dim
        self.t_mlp = nn.Sequential(nn.Linear(t_dim, 4 * t_dim), nn.Mish(), nn.Linear(4 * t_dim, t_dim))
        cond = t_dim + global_cond_dim
        dims = [action_dim, *down_dims]
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = i == len(down_dims) - 1
            self.down.append(nn.ModuleList([_FiLMBlock(a, b, cond, kernel, groups),
                                            _FiLMBlock(b, b, cond, kernel, groups),
                                            nn.Conv1d(b, b, 3, 2, 1) if not last else nn.Identity()]))
        mid = down_dims[-1]
        self.mid = nn.ModuleList([_FiLMBlock(mid, mid, cond, kernel, groups) for _ in range(2)])
        self.up = nn.ModuleList()
        for a, b in zip(reversed(down_dims[1:]), reversed(down_dims[:-1]), strict=True):  # one upsample per downsample
            self.up.append(nn.ModuleList([_FiLMBlock(2 * a, b, cond, kernel, groups),
                                          _FiLMBlock(b, b, cond, kernel, groups), nn.ConvTranspose1d(b, b, 4, 2, 1)]))
        c0 = down_dims[0]
        self.final = nn.Sequential(nn.Conv1d(c0, c0, kernel, padding=kernel // 2), nn.GroupNorm(groups, c0), nn.Mish(),
                                   nn.Conv1d(c0, action_dim, 1))

    def forward(self, x: Tensor, t: Tensor, global_cond: Tensor) -> Tensor:
        """Noisy actions (B, T, A), steps (B,), condition (B, G) -> predicted noise (B, T, A)."""
        cond = torch.cat([self.t_mlp(sinusoidal_embedding(t, self.t_dim)), global_cond], -1)  # (B, t_dim + G)
        h = x.transpose(1, 2)  # (B, A, T)
        skips = []
        for b1, b2, down in self.down:
            h = b2(b1(h, cond), cond)
            skips.append(h)
            h = down(h)
        for blk in self.mid:
            h = blk(h, cond)
        for b1, b2, up in self.up:
            h = torch.cat([h, skips.pop()], 1)
            h = up(b2(b1(h, cond), cond))
        return self.final(h).transpose(1, 2)  # (B, T, A)


class TransformerDenoiser(nn.Module):
    """Action tokens (B, H, d) cross-attend to condition tokens [timestep, obs_1..obs_To] (B, 1 + To, d)."""

    def __init__(self, action_dim: int, obs_dim: int, n_obs_steps: int, horizon: int, d: int, heads: int,
                 layers: int, dropout: float) -> None:
        super().__init__()
        self.d, self.n_obs_steps = d, n_obs_steps
        self.action_in = nn.Linear(action_dim, d)
        self.obs_in = nn.Linear(obs_dim, d)
        self.t_mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.Mish(), nn.Linear(4 * d, d))
        self.pos = nn.Parameter(torch.zeros(1, horizon, d))
        self.cond_pos = nn.Parameter(torch.zeros(1, 1 + n_obs_steps, d))
        enc = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
        self.cond_encoder = nn.TransformerEncoder(enc, 1, enable_nested_tensor=False)
        dec = nn.TransformerDecoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, layers)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, action_dim))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.cond_pos, std=0.02)

    def forward(self, x: Tensor, t: Tensor, global_cond: Tensor) -> Tensor:
        """Noisy actions (B, H, A), steps (B,), condition (B, To * D_obs) -> predicted noise (B, H, A)."""
        b = x.shape[0]
        t_tok = self.t_mlp(sinusoidal_embedding(t, self.d))[:, None]  # (B, 1, d)
        obs_tok = self.obs_in(global_cond.reshape(b, self.n_obs_steps, -1))  # (B, To, d)
        memory = self.cond_encoder(torch.cat([t_tok, obs_tok], 1) + self.cond_pos)  # (B, 1 + To, d)
        h = self.decoder(self.action_in(x) + self.pos, memory)  # (B, H, d)
        return self.out(h)


class DiffusionNet(nn.Module):
    """Observation encoder + denoiser: what training updates, what the EMA copy averages and what export traces."""

    def __init__(self, cfg: DiffusionConfig, state_dim: int, image_channels: list[int], action_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbones = nn.ModuleList()
        self.pools = nn.ModuleList()
        for c in image_channels:  # one backbone per camera
            bb = ResNetBackbone(c, cfg.backbone_width)
            if cfg.backbone_weights:
                bb.load_weights(cfg.backbone_weights)
            self.backbones.append(bb)
            self.pools.append(SpatialSoftmax(bb.out_channels, cfg.spatial_keypoints))
        obs_dim = state_dim + len(image_channels) * 2 * cfg.spatial_keypoints
        if cfg.denoiser == "unet":
            self.denoiser: nn.Module = ConditionalUnet1D(action_dim, obs_dim * cfg.n_obs_steps, cfg.down_dims,
                                                     cfg.kernel_size, cfg.n_groups, cfg.timestep_embed_dim)
        else:
            self.denoiser = TransformerDenoiser(action_dim, obs_dim, cfg.n_obs_steps, cfg.horizon, cfg.transformer_dim,
                                            cfg.transformer_heads, cfg.transformer_layers, cfg.transformer_dropout)

    def encode(self, state: Tensor, images: list[Tensor]) -> Tensor:
        """State (B, To, Ds) and normalized images [(B, To, C, H, W)] -> global condition (B, To * D_obs)."""
        feats = [state]
        for x, bb, pool in zip(images, self.backbones, self.pools, strict=True):
            b, t = x.shape[:2]
            feats.append(pool(bb(x.flatten(0, 1))).reshape(b, t, -1))  # (B, To, 2K)
        return torch.cat(feats, -1).flatten(1)

    def forward(self, noisy: Tensor, t: Tensor, global_cond: Tensor) -> Tensor:
        """Predicted noise (B, H, A)."""
        return self.denoiser(noisy, t, global_cond)


class DiffusionPolicy(nn.Module):
    """Diffusion Policy over dataset features; see the module docstring."""

    kind: ClassVar[str] = "diffusion"
    config_class: ClassVar[type] = DiffusionConfig

    def __init__(self, cfg: DiffusionConfig, features: dict[str, tuple[int, ...]],
                 stats: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        if cfg.sampler not in ("ddpm", "ddim"):
            raise PolicyInputError(f"diffusion sampler must be ddpm or ddim, got '{cfg.sampler}'")
        if cfg.n_action_steps > cfg.horizon - cfg.n_obs_steps + 1:
            raise PolicyInputError(f"n_action_steps ({cfg.n_action_steps}) must be <= horizon - n_obs_steps + 1 "
                                   f"({cfg.horizon - cfg.n_obs_steps + 1})")
        if cfg.denoiser not in ("unet", "transformer"):
            raise PolicyInputError(f"diffusion denoiser must be unet or transformer, got '{cfg.denoiser}'")
        if cfg.denoiser == "unet" and cfg.horizon % 2 ** (len(cfg.down_dims) - 1):
            raise PolicyInputError(f"horizon ({cfg.horizon}) must be divisible by 2^(levels - 1) = "
                                   f"{2 ** (len(cfg.down_dims) - 1)}")
        self.cfg = cfg
        self.features = {k: tuple(v) for k, v in features.items()}
        self.state_keys = list(cfg.state_keys)
        self.image_keys = [k for k in features if is_image(k)] if cfg.image_keys is None else list(cfg.image_keys)
        for k in [*self.state_keys, *self.image_keys, ACTION]:
            if k not in self.features:
                raise PolicyInputError(f"Diffusion Policy needs feature '{k}', which the dataset does not have")
        self.action_dim = self.features[ACTION][0]
        modes = {**{k: cfg.state_norm for k in self.state_keys}, ACTION: "min_max",
                 **{k: "mean_std" for k in self.image_keys}}
        self.normalizer = Normalizer(self.features, modes, stats)
        state_dim = sum(self.features[k][0] for k in self.state_keys)
        self.net = DiffusionNet(cfg, state_dim, [self.features[k][-1] for k in self.image_keys], self.action_dim)
        self.ema: DiffusionNet | None = None
        if cfg.use_ema:
            self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        self.train_scheduler = make_scheduler(cfg, "ddpm")
        self.sample_scheduler = make_scheduler(cfg, cfg.sampler)
        self.queue = ChunkQueue(cfg.n_action_steps)
        self._obs_hist: list[dict[str, Tensor]] = []

    # ---- interface -------------------------------------------------------------------------------------------
    @property
    def deltas(self) -> dict[str, list[int]]:
        """Windows: To observations ending now, H actions starting at the oldest of them."""
        c = self.cfg
        obs = list(range(1 - c.n_obs_steps, 1))
        d = {k: obs for k in [*self.state_keys, *self.image_keys]}
        d[ACTION] = list(range(1 - c.n_obs_steps, 1 - c.n_obs_steps + c.horizon))
        return d

    @property
    def input_keys(self) -> list[str]:
        """Observation keys read at inference."""
        return [*self.state_keys, *self.image_keys]

    def describe(self) -> dict[str, Any]:
        """JSON description that rebuilds this policy (with `state_dict`): kind, config, features."""
        features = {k: list(v) for k, v in self.features.items()}
        return {"kind": self.kind, "config": asdict(self.cfg), "features": features}

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups (the EMA copy is not trained)."""
        return [{"params": list(self.net.parameters()), "lr": self.cfg.lr}]

    def reset(self) -> None:
        """Clear the action queue and the observation history (episode start)."""
        self.queue.reset()
        self._obs_hist = []

    @torch.no_grad()
    def ema_update(self) -> None:
        """θ_ema ← d θ_ema + (1 - d) θ after an optimizer step, d = min(ema_max, 1 - (1 + k)^-power)."""
        if self.ema is None:
            return
        k = int(self.ema_steps)
        d = min(self.cfg.ema_max, max(0.0, 1 - (1 + k) ** -self.cfg.ema_power))
        for pe, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.ema.buffers(), self.net.buffers(), strict=True):
            be.copy_(b)
        self.ema_steps += 1

    @property
    def inference_net(self) -> DiffusionNet:
        """The EMA weights when kept, else the trained ones."""
        return self.ema if self.ema is not None else self.net

    # ---- internals -------------------------------------------------------------------------------------------
    def _condition(self, net: DiffusionNet, batch: dict[str, Tensor], augment: bool) -> Tensor:
        """Global condition (B, To * D_obs) from a batch with (B, To, ...) observation windows."""
        to = self.cfg.n_obs_steps
        states = []
        for k in self.state_keys:
            x = batch[k]
            if x.ndim != 3 or x.shape[1] != to or x.shape[2] != self.features[k][0]:
                raise PolicyInputError(f"key '{k}': expected (B, {to}, {self.features[k][0]}), got {tuple(x.shape)}")
            states.append(self.normalizer.normalize(k, x))
        images = []
        for k in self.image_keys:
            x = batch[k]  # (B, To, H, W, C)
            if x.ndim != 5 or tuple(x.shape[2:]) != self.features[k]:
                raise PolicyInputError(f"key '{k}': expected (B, {to}, {', '.join(map(str, self.features[k]))}), "
                                       f"got {tuple(x.shape)}")
            if augment and self.cfg.color_jitter > 0:
                x = color_jitter(x.float().flatten(0, 1), self.cfg.color_jitter).reshape(x.shape)
            y = self.normalizer.normalize(k, x).permute(0, 1, 4, 2, 3)  # (B, To, C, H, W)
            if augment and self.cfg.image_shift > 0:
                y = random_shift(y.flatten(0, 1), self.cfg.image_shift).reshape(y.shape)
            images.append(y)
        return net.encode(torch.cat(states, -1), images)

    # ---- training ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Denoising loss of a training batch (`action` (B, H, A), `action_is_pad` (B, H)) and its parts."""
        cond = self._condition(self.net, batch, augment=self.training)  # (B, G)
        a0 = self.normalizer.normalize(ACTION, batch[ACTION])  # (B, H, A) in [-1, 1]
        b, h, _ = a0.shape
        if h != self.cfg.horizon:
            raise PolicyInputError(f"key 'action': batch has {h} steps, the policy's horizon is {self.cfg.horizon}")
        pad = batch.get(f"{ACTION}_is_pad", torch.zeros(b, h, dtype=torch.bool, device=a0.device))  # (B, H)
        # the U-Net's convolutions mix neighbouring steps: padded steps take the nearest real action, so that
        # whatever a padded target holds changes neither the noisy input nor the loss
        a0 = a0.gather(1, nearest_valid(pad)[..., None].expand_as(a0))
        noise = torch.randn_like(a0)
        t = torch.randint(0, self.cfg.num_train_timesteps, (b,), device=a0.device)
        noisy = self.train_scheduler.add_noise(a0, noise, t)  # a^k = √ᾱ_k a⁰ + √(1-ᾱ_k) ε
        pred = self.net(noisy, t, cond)
        target = noise if self.cfg.prediction_type == "epsilon" else a0
        valid = (~pad).unsqueeze(-1).float()  # (B, H, 1)
        mse = ((pred - target).square() * valid).sum() / (valid.sum() * self.action_dim).clamp_min(1)
        return mse, {"mse": float(mse.detach())}

    # ---- inference ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, cond: Tensor, generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        """Run the sampler from N(0, I) (or from `noise` (B, H, A)): normalized action sequences (B, H, A)."""
        net, sch = self.inference_net, self.sample_scheduler
        x = noise if noise is not None else torch.randn(cond.shape[0], self.cfg.horizon, self.action_dim,
                                                         device=cond.device, generator=generator)
        steps = self.cfg.num_train_timesteps if self.cfg.sampler == "ddpm" else self.cfg.num_inference_steps
        sch.set_timesteps(steps)
        for t in sch.timesteps:
            eps = net(x, t.expand(x.shape[0]).to(cond.device), cond)
            x = sch.step(eps, t, x, generator=generator).prev_sample
        return x

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """The executable actions (B, n_action_steps, A) in dataset units, from observation windows (B, To, ...)."""
        batch = obs_to_batch(obs, self.input_keys)
        cond = self._condition(self.inference_net, batch, augment=False)
        seq = self.normalizer.unnormalize(ACTION, self.sample(cond, generator))  # (B, H, A)
        start = self.cfg.n_obs_steps - 1  # the sequence starts at the oldest observation
        return seq[:, start:start + self.cfg.n_action_steps]

    @torch.no_grad()
    def select_action(self, obs: dict[str, Tensor]) -> Tensor:
        """The action (B, A) for this step; keeps the last To observations and replans when the queue runs dry."""
        batch = obs_to_batch(obs, self.input_keys)
        self._obs_hist.append(batch)
        if not self._obs_hist[:-1]:  # episode start: repeat the first observation (as the dataset pads)
            self._obs_hist = [batch] * self.cfg.n_obs_steps
        self._obs_hist = self._obs_hist[-self.cfg.n_obs_steps:]
        if self.queue.needs_chunk:
            window = {k: torch.stack([o[k] for o in self._obs_hist], 1) for k in self.input_keys}  # (B, To, ...)
            chunk = self.predict_action_chunk(window)  # (B, n_action_steps, A)
            self.queue.push(chunk)
        return self.queue.pop()


def nearest_valid(pad: Tensor) -> Tensor:
    """(B, H) padding mask -> (B, H) index of the nearest real step: the last at or before, else the first after.

    Rows that are all padding keep their own indices.
    """
    b, h = pad.shape
    idx = torch.arange(h, device=pad.device).expand(b, h)
    last = torch.where(pad, -1, idx).cummax(1).values  # last valid at or before t, -1 if none yet
    first = torch.where(pad, h, idx).flip(1).cummin(1).values.flip(1)  # first valid at or after t, h if none
    out = torch.where(last >= 0, last, first)
    return torch.where(out >= h, idx, out)


def make_scheduler(cfg: DiffusionConfig, kind: str) -> Any:
    """A diffusers noise scheduler (DDPM or DDIM) with the policy's noise schedule."""
    diffusers = require("diffusers", "il")
    cls = {"ddpm": diffusers.DDPMScheduler, "ddim": diffusers.DDIMScheduler}[kind]
    return cls(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
               clip_sample=cfg.clip_sample, prediction_type=cfg.prediction_type)
