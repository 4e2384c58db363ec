"""Action Chunking with Transformers (Zhao et al. 2023): a CVAE whose decoder predicts a chunk of future actions.

Training (`forward`): the CVAE encoder reads [CLS, state, a_t..a_{t+H-1}] and gives q(z | s, a) = N(mu, sigma²);
the decoder reads z (sampled), the state and camera features and predicts the chunk â (H, A):

    loss = mean_{t not padded} |â_t - a_t|_1  +  kl_weight · KL(N(mu, sigma²) || N(0, I))

Inference (`predict_action_chunk`): z = 0 (the prior mean). `select_action` plays chunks through a `ChunkQueue`:
with `temporal_ensemble_coef` a chunk is predicted every step and overlapping predictions are averaged
(w_i = exp(-m i), oldest first), otherwise `n_action_steps` actions of each chunk are executed.
Everything is in normalized units inside; observations and actions are normalized with the dataset's mean/std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robolearn.networks.resnet import ResNetBackbone
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
from robolearn.policies.layers import encode_cls, use_fast_dropout


@dataclass(kw_only=True)
class ACTConfig:
    """ACT hyperparameters (defaults: a CPU-sized model; the paper uses dim_model 512, 4 + 7 layers, chunk 100)."""

    state_keys: tuple[str, ...] = ("observation.policy",)
    """Dataset keys of proprioceptive/state vectors, concatenated."""
    image_keys: tuple[str, ...] | None = None
    """Camera keys (observation.images.*); None: every camera in the dataset."""
    chunk_size: int = 20
    """Actions predicted per chunk (H)."""
    n_action_steps: int = 1
    """Actions executed from each chunk before predicting the next (ignored with temporal ensembling)."""
    temporal_ensemble_coef: float | None = 0.01
    """ACT's m in w_i = exp(-m i); None: no ensembling (execute n_action_steps of each chunk)."""
    dim_model: int = 256
    n_heads: int = 8
    dim_feedforward: int = 1024
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    n_vae_encoder_layers: int = 4
    latent_dim: int = 32
    dropout: float = 0.1
    use_vae: bool = True
    """Train with the CVAE encoder (False: a deterministic transformer, z = 0)."""
    kl_weight: float = 10.0
    backbone_width: int = 16
    """Base width of the ResNet-18-class camera backbone (64 = ResNet-18)."""
    backbone_weights: str | None = None
    """Optional local safetensors file with pretrained backbone weights (never downloaded)."""
    image_shift: int = 4
    """Training augmentation: random shift of camera images by up to this many pixels (0: off)."""
    color_jitter: float = 0.0
    """Training augmentation: random brightness and contrast factors in 1 ± this (0: off)."""
    lr: float = 1e-4
    lr_backbone: float = 1e-5
    weight_decay: float = 1e-4


class ACTPolicy(nn.Module):
    """ACT over dataset features; see the module docstring."""

    kind: ClassVar[str] = "act"
    config_class: ClassVar[type] = ACTConfig

    def __init__(self, cfg: ACTConfig, features: dict[str, tuple[int, ...]],
                 stats: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.features = {k: tuple(v) for k, v in features.items()}
        self.state_keys = list(cfg.state_keys)
        self.image_keys = [k for k in features if is_image(k)] if cfg.image_keys is None else list(cfg.image_keys)
        for k in [*self.state_keys, *self.image_keys, ACTION]:
            if k not in self.features:
                raise PolicyInputError(f"ACT needs feature '{k}', which the dataset does not have")
        self.action_dim = self.features[ACTION][0]
        self.state_dim = sum(self.features[k][0] for k in self.state_keys)
        modes = {k: "mean_std" for k in [*self.state_keys, *self.image_keys, ACTION]}
        self.normalizer = Normalizer(self.features, modes, stats)
        d, h = cfg.dim_model, cfg.chunk_size

        def transformer_encoder(layers: int) -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.dim_feedforward, cfg.dropout, batch_first=True)
            return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

        # CVAE encoder: [CLS, state, actions] -> (mu, log sigma²)
        if cfg.use_vae:
            self.vae_cls = nn.Parameter(torch.zeros(1, 1, d))
            self.vae_state_in = nn.Linear(self.state_dim, d)
            self.vae_action_in = nn.Linear(self.action_dim, d)
            self.vae_encoder = transformer_encoder(cfg.n_vae_encoder_layers)
            self.vae_out = nn.Linear(d, 2 * cfg.latent_dim)
            self.register_buffer("vae_pos", sinusoidal_embedding(torch.arange(h + 2), d)[None], persistent=False)
        # transformer encoder over [z, state, camera tokens]
        self.latent_in = nn.Linear(cfg.latent_dim, d)
        self.state_in = nn.Linear(self.state_dim, d)
        self.token_pos = nn.Parameter(torch.zeros(1, 2, d))
        if self.image_keys:
            c = self.features[self.image_keys[0]][-1]
            self.backbone = ResNetBackbone(c, cfg.backbone_width)
            if cfg.backbone_weights:
                self.backbone.load_weights(cfg.backbone_weights)
            self.image_in = nn.Conv2d(self.backbone.out_channels, d, 1)
            self.camera_pos = nn.Parameter(torch.zeros(len(self.image_keys), 1, d))
        self.encoder = transformer_encoder(cfg.n_encoder_layers)
        # decoder: H learned queries attend to the encoder memory
        dec_layer = nn.TransformerDecoderLayer(d, cfg.n_heads, cfg.dim_feedforward, cfg.dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(dec_layer, cfg.n_decoder_layers)
        self.queries = nn.Parameter(torch.zeros(1, h, d))
        self.action_out = nn.Linear(d, self.action_dim)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.normal_(self.queries, std=0.02)
        nn.init.normal_(self.token_pos, std=0.02)
        use_fast_dropout(self)  # the same masks' distribution, drawn ~4x faster on the CPU (policies/layers.py)
        self.queue = ChunkQueue(h, cfg.n_action_steps, cfg.temporal_ensemble_coef)

    # ---- interface -------------------------------------------------------------------------------------------
    @property
    def deltas(self) -> dict[str, list[int]]:
        """The data windows training needs: current observation, the next `chunk_size` actions."""
        d = {k: [0] for k in [*self.state_keys, *self.image_keys]}
        d[ACTION] = list(range(self.cfg.chunk_size))
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
        """Optimizer groups: the camera backbone at its own learning rate."""
        backbone = [p for n, p in self.named_parameters() if n.startswith("backbone.")]
        rest = [p for n, p in self.named_parameters() if not n.startswith("backbone.")]
        groups = [{"params": rest, "lr": self.cfg.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": self.cfg.lr_backbone})
        return groups

    def reset(self) -> None:
        """Clear the action queue (call at episode start)."""
        self.queue.reset()

    # ---- internals -------------------------------------------------------------------------------------------
    def _state(self, batch: dict[str, Tensor]) -> Tensor:
        """Normalized concatenated state at the current frame (B, Ds); accepts (B, D) or (B, 1, D) values."""
        parts = []
        for k in self.state_keys:
            x = batch[k]
            x = x[:, -1] if x.ndim == 3 else x
            if x.shape[-1] != self.features[k][0]:
                raise PolicyInputError(f"key '{k}': got {x.shape[-1]} values, the policy was built for "
                                       f"{self.features[k][0]}")
            parts.append(self.normalizer.normalize(k, x))
        return torch.cat(parts, -1)  # (B, Ds)

    def _image_tokens(self, batch: dict[str, Tensor], augment: bool) -> Tensor:
        """Camera feature tokens (B, n_cam * h * w, d) with 2-D sinusoidal + per-camera position embeddings."""
        tokens = []
        for i, k in enumerate(self.image_keys):
            x = batch[k]
            x = x[:, -1] if x.ndim == 5 else x  # (B, H, W, C)
            if tuple(x.shape[1:]) != self.features[k]:
                raise PolicyInputError(f"key '{k}': got images {tuple(x.shape[1:])}, the policy was built for "
                                       f"{self.features[k]}")
            if augment and self.cfg.color_jitter > 0:
                x = color_jitter(x.float(), self.cfg.color_jitter)
            x = self.normalizer.normalize(k, x).permute(0, 3, 1, 2)  # (B, C, H, W)
            if augment and self.cfg.image_shift > 0:
                x = random_shift(x, self.cfg.image_shift)
            f = self.image_in(self.backbone(x))  # (B, d, h, w)
            b, d, hh, ww = f.shape
            pos = _pos_2d(hh, ww, d, f.device)  # (h*w, d)
            tokens.append(f.flatten(2).transpose(1, 2) + pos + self.camera_pos[i])  # (B, h*w, d)
        return torch.cat(tokens, 1)

    def _decode(self, state: Tensor, z: Tensor, batch: dict[str, Tensor], augment: bool) -> Tensor:
        """Normalized action chunk (B, H, A) from state (B, Ds), latent (B, L) and cameras."""
        tokens = torch.stack([self.latent_in(z), self.state_in(state)], 1) + self.token_pos  # (B, 2, d)
        if self.image_keys:
            tokens = torch.cat([tokens, self._image_tokens(batch, augment)], 1)  # (B, 2 + n_img, d)
        memory = self.encoder(tokens)
        q = self.queries.expand(state.shape[0], -1, -1)  # (B, H, d)
        return self.action_out(self.decoder(q, memory))  # (B, H, A)

    # ---- training ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Loss of a training batch (dataset keys, `action` (B, H, A), `action_is_pad` (B, H)) and its parts."""
        state = self._state(batch)  # (B, Ds)
        actions = self.normalizer.normalize(ACTION, batch[ACTION])  # (B, H, A)
        b, h, _ = actions.shape
        if h != self.cfg.chunk_size:
            raise PolicyInputError(f"key 'action': batch has {h} steps, the policy predicts {self.cfg.chunk_size}")
        pad = batch.get(f"{ACTION}_is_pad", torch.zeros(b, h, dtype=torch.bool, device=actions.device))  # (B, H)
        if self.cfg.use_vae:
            tokens = torch.cat([self.vae_cls.expand(b, -1, -1), self.vae_state_in(state)[:, None],
                                self.vae_action_in(actions)], 1) + self.vae_pos  # (B, H + 2, d)
            key_pad = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=pad.device), pad], 1)
            stats = self.vae_out(encode_cls(self.vae_encoder, tokens, key_pad))  # (B, 2L): only CLS is read
            mu, logvar = stats.chunk(2, -1)  # (B, L) each
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            # KL(N(mu, σ²) || N(0, I)) summed over latent dims, averaged over the batch
            kl = (-0.5 * (1 + logvar - mu.square() - logvar.exp())).sum(-1).mean()
        else:
            z = torch.zeros(b, self.cfg.latent_dim, device=state.device)
            kl = torch.zeros((), device=state.device)
        pred = self._decode(state, z, batch, augment=self.training)  # (B, H, A)
        valid = (~pad).unsqueeze(-1).float()  # (B, H, 1)
        l1 = (F.l1_loss(pred, actions, reduction="none") * valid).sum() / (valid.sum() * self.action_dim).clamp_min(1)
        loss = l1 + self.cfg.kl_weight * kl
        return loss, {"l1": float(l1.detach()), "kl": float(kl.detach())}

    # ---- inference ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, Tensor]) -> Tensor:
        """Action chunk (B, H, A) in dataset units for observations keyed like the dataset (or env groups)."""
        batch = obs_to_batch(obs, self.input_keys)
        state = self._state(batch)
        z = torch.zeros(state.shape[0], self.cfg.latent_dim, device=state.device)  # prior mean
        return self.normalizer.unnormalize(ACTION, self._decode(state, z, batch, augment=False))

    @torch.no_grad()
    def select_action(self, obs: dict[str, Tensor]) -> Tensor:
        """The action (B, A) for this control step, through the action queue (temporal ensembling or chunks)."""
        if self.queue.needs_chunk:
            self.queue.push(self.predict_action_chunk(obs))
        return self.queue.pop()


def _pos_2d(h: int, w: int, d: int, device: torch.device) -> Tensor:
    """2-D sinusoidal position embedding (h * w, d): half the channels for y, half for x."""
    ys = sinusoidal_embedding(torch.arange(h, device=device), d // 2)  # (h, d/2)
    xs = sinusoidal_embedding(torch.arange(w, device=device), d - d // 2)  # (w, d/2)
    return torch.cat([ys[:, None].expand(h, w, -1), xs[None].expand(h, w, -1)], -1).reshape(h * w, d)
