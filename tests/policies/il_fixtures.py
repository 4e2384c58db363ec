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


EASY_HOVER = ("init_max_angle_deg=10", "init_lin_vel=0.2", "init_ang_vel=0.2", "episode_length_s=2")


def hover_demos(path: str | Path, episodes: int = 16, seed: int = 0, noise: float = 0.0) -> Path:
    """Scripted-expert quadrotor-hover demos from easy starts, recorded in one batched rollout (one episode per env).

    With `noise` the executed action is the expert's plus Gaussian noise while the recorded label stays the expert's
    (DART, Laskey et al. 2017): the demos then show how to recover from the small errors a learned policy makes.
    """
    import torch
    import yaml

    from robolearn.envs import registry
    from robolearn.teleop.collect import dataset_features

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=") for s in EASY_HOVER)}
    env = registry.make("quadrotor-hover", seed=seed, num_envs=episodes, **overrides)
    feats, _ = dataset_features(env, camera=False)
    keep = {"observation.policy", "action"}
    gen = torch.Generator().manual_seed(seed)
    obs = env.reset()
    frames: dict[str, list] = {k: [] for k in keep}
    alive = torch.ones(episodes, dtype=torch.bool)
    ends = torch.full((episodes,), env.cfg.max_episode_steps)
    with torch.no_grad():
        for t in range(env.cfg.max_episode_steps):
            frames["observation.policy"].append(obs["policy"].clone())
            expert = env.expert_action(obs)
            frames["action"].append(expert.clamp(env.spec.action.low, env.spec.action.high))
            res = env.step(expert + noise * torch.randn(expert.shape, generator=gen))
            done = (res.terminated | res.truncated) & alive
            ends[done] = t + 1
            alive &= ~done
            obs = res.obs
    data = {k: torch.stack(v, 1).numpy() for k, v in frames.items()}  # (N, T, D)
    with EpisodeWriter(path, {k: feats[k] for k in keep}, fps=env.spec.action.rate_hz, durable=False) as w:
        for i in range(episodes):
            w.add_episode({k: v[i, :int(ends[i])] for k, v in data.items()})
    save_stats(path, compute_stats(path))
    return Path(path)
