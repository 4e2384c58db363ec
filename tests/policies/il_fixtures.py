"""Tiny datasets and policy configs shared by the imitation tests and `make_golden.py`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robolearn.data.stats import compute_stats, save_stats
from robolearn.data.store import EpisodeWriter, Feature
from robolearn.policies.act import ACTConfig
from robolearn.policies.diffusion import DiffusionConfig

CAM = "observation.images.cam"
STATE = "observation.policy"


def write_fixture(path: str | Path, images: bool = True, lengths: tuple[int, ...] = (7, 5), seed: int = 0) -> Path:
    """A synthetic store: state (6,), action (2,) (a smooth function of the state), optional 16x16 camera."""
    rng = np.random.default_rng(seed)
    feats = {STATE: Feature((6,)), "action": Feature((2,))}
    if images:
        feats[CAM] = Feature((16, 16, 3), "uint8", axes=("height", "width", "channel"))
    with EpisodeWriter(path, feats, fps=10.0, durable=False) as w:
        for n in lengths:
            state = rng.normal(size=(n, 6)).astype(np.float32)
            ep = {STATE: state, "action": np.tanh(state[:, :2] - 0.5 * state[:, 2:4]).astype(np.float32)}
            if images:
                ep[CAM] = rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
            w.add_episode(ep)
    save_stats(path, compute_stats(path))
    return Path(path)


def tiny_act(**kw) -> ACTConfig:
    return ACTConfig(**{"chunk_size": 4, "dim_model": 16, "n_heads": 2, "dim_feedforward": 32, "n_encoder_layers": 1,
                        "n_decoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 4, "dropout": 0.0,
                        "backbone_width": 4, "image_shift": 2, **kw})


def tiny_diffusion(**kw) -> DiffusionConfig:
    return DiffusionConfig(**{"n_obs_steps": 2, "horizon": 4, "n_action_steps": 2, "down_dims": (8, 16),
                              "kernel_size": 3, "n_groups": 4, "timestep_embed_dim": 8, "num_train_timesteps": 20,
                              "num_inference_steps": 5, "backbone_width": 4, "spatial_keypoints": 4,
                              "image_shift": 2, **kw})
