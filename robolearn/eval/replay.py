"""Dataset replay: re-execute recorded actions and measure divergence; evaluate a policy on dataset episodes.

Each episode starts from its recorded initial state; the report says how far the re-simulated state drifts from
the recorded one.

Open-loop replay needs the `sim.state` feature that `robolearn collect` records (env 0's full state before each
action, `robolearn.teleop.adapter.get_state`); where a device command changed task state during collection
(the quadrotor-hover goal), the recorded `teleop.command` is applied again at the same step. Divergence per
episode: the largest absolute difference of any state entry over the episode, and, for tasks with
`viz_state()["pos"]`, the position difference in metres.
Policy evaluation: open-loop action error (policy on the recorded observations vs. the recorded actions) and a
closed-loop rollout from each recorded initial state (the task's success metric).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.core.env import BatchedEnv
from robolearn.core.errors import RobolearnError
from robolearn.core.types import Obs
from robolearn.data.store import DatasetError, EpisodeStore
from robolearn.teleop import adapter
from robolearn.teleop.collect import CAMERA_KEY, STATE_KEY

Policy = Callable[[Obs], torch.Tensor]


def make_env(store: EpisodeStore, task: str | None, seed: int = 0) -> tuple[BatchedEnv, str]:
    """A one-env instance of the dataset's task (from provenance unless `task` is given)."""
    from robolearn.envs import registry

    if task is None:
        tasks = {s.get("task") for s in store.sessions if s.get("task")}
        if len(tasks) != 1:
            raise DatasetError(store.name, f"records tasks {sorted(tasks) or 'none'}; name one with --task")
        task = tasks.pop()
    return registry.make(task, num_envs=1, seed=seed), task


def _check_state(store: EpisodeStore, env: BatchedEnv, layout: list[Any]) -> None:
    if STATE_KEY not in store.features:
        raise DatasetError(store.name, "has no simulator state; replay needs datasets recorded by `robolearn "
                                       "collect` (or another source of the task's state)", key=STATE_KEY)
    want = adapter.state_names(layout)
    have = store.features[STATE_KEY].names
    if tuple(have or ()) != want:
        raise DatasetError(store.name, f"state layout does not match task '{env.spec.name}' "
                                       f"({len(have or ())} recorded entries, {len(want)} in the task)", key=STATE_KEY)


@dataclasses.dataclass
class ReplayResult:
    """Divergence of one replayed episode."""

    episode: int
    steps: int
    max_state_error: float
    max_pos_error_m: float | None
    final_pos_error_m: float | None
    resim_pos: np.ndarray | None = None  # (T, 3) re-simulated positions (for plots)
    rec_pos: np.ndarray | None = None


def _pos(env: BatchedEnv) -> np.ndarray | None:
    viz = env.viz_state() if hasattr(env, "viz_state") else {}
    return viz["pos"][0].detach().cpu().numpy().astype(np.float64) if "pos" in viz else None


@torch.no_grad()
def replay_episode(store: EpisodeStore, episode: int, env: BatchedEnv, shadow: BatchedEnv,
                   frames: list[tuple[np.ndarray, np.ndarray]] | None = None) -> ReplayResult:
    """Replay one episode open-loop in `env`; `shadow` shows recorded states (for positions and video frames)."""
    layout = adapter.state_layout(env)
    _check_state(store, env, layout)
    keys = [STATE_KEY, "action"] + ([CAMERA_KEY] if frames is not None and CAMERA_KEY in store.features else [])
    keys += ["teleop.command"] if "teleop.command" in store.features else []
    d = store.read_episode(episode, keys)
    states, actions = d[STATE_KEY], d["action"]
    commands = d.get("teleop.command")
    env.reset()
    adapter.set_state(env, layout, states[0])
    max_err, pos_errs, resim, rec = 0.0, [], [], []
    for t in range(len(actions)):
        if t > 0:
            if commands is not None:  # what the device did to task state (a moved goal) happens again
                adapter.apply_command_state(env, commands[t])  # recorded states are taken after it
            err = np.abs(adapter.get_state(env, layout) - states[t])
            max_err = max(max_err, float(np.nanmax(err)))
            p = _pos(env)
            if p is not None:
                adapter.set_state(shadow, layout, states[t])
                q = _pos(shadow)
                resim.append(p)
                rec.append(q)
                pos_errs.append(float(np.linalg.norm(p - q)))
        if frames is not None:
            adapter.set_state(shadow, layout, states[t])
            left = d[CAMERA_KEY][t] if CAMERA_KEY in d else adapter.camera_frame(shadow)
            right = adapter.camera_frame(env, (left.shape[1], left.shape[0]))
            frames.append((left, right))
        env.step(torch.as_tensor(actions[t], device=env.device).reshape(1, -1))
    return ReplayResult(episode, len(actions), max_err, max(pos_errs) if pos_errs else None,
                        pos_errs[-1] if pos_errs else None,
                        np.array(resim) if resim else None, np.array(rec) if rec else None)


def load_policy_fn(spec: str, env: BatchedEnv) -> tuple[Policy, str]:
    """`expert` (the task's scripted expert), an artifact directory (manifest.json) or a run directory."""
    if spec == "expert":
        if not hasattr(env, "expert_action"):
            raise RobolearnError(f"task '{env.spec.name}' has no scripted expert")
        return env.expert_action, "scripted expert"
    path = Path(spec)
    if (path / "manifest.json").exists():
        from robolearn.export.runtime import PolicyRuntime

        rt = PolicyRuntime.load(path, backend="torch")
        return (lambda obs: torch.from_numpy(rt.act(obs["policy"].cpu().numpy())).to(obs["policy"].device),
                f"artifact {path.name}")
    from robolearn.learners.runner import load_policy

    _, actor, ckpt = load_policy(path)
    return (lambda obs: actor(obs["policy"])), f"{path.name} ({ckpt.name})"


@torch.no_grad()
def evaluate_on_dataset(store: EpisodeStore, episodes: Sequence[int], env: BatchedEnv, policy: Policy,
                        max_steps: int | None = None) -> list[dict[str, float]]:
    """Per episode: open-loop action RMSE on the recorded observations, and a closed-loop rollout.

    The rollout starts from the recorded initial state and runs until the task ends the episode.
    """
    layout = adapter.state_layout(env)
    _check_state(store, env, layout)
    groups = [g for g in env.spec.obs_terms if f"observation.{g}" in store.features]
    out = []
    for e in episodes:
        d = store.read_episode(e, [STATE_KEY, "action"] + [f"observation.{g}" for g in groups])
        obs = {g: torch.as_tensor(d[f"observation.{g}"], device=env.device) for g in groups}
        pred = policy(obs).detach().cpu().numpy()
        rmse = float(np.sqrt(np.mean((pred - d["action"]) ** 2)))
        env.reset()
        adapter.set_state(env, layout, d[STATE_KEY][0])
        o = env._observe()
        row: dict[str, float] = {"episode": e, "action_rmse": rmse}
        for _ in range(max_steps or env.cfg.max_episode_steps + 1):
            res = env.step(policy(o))
            o = res.obs
            if "episode" in res.info:
                ep = res.info["episode"]
                row.update({k: float(v[0]) for k, v in ep.items() if k != "env_ids"})
                break
        out.append(row)
    return out


def write_side_by_side(frames: list[tuple[np.ndarray, np.ndarray]], out: Path, fps: float) -> Path:
    """H.264 MP4: recorded view (left) and re-simulated view (right)."""
    from robolearn.core.errors import require

    av = require("av", "viz")
    out.parent.mkdir(parents=True, exist_ok=True)
    h = max(max(a.shape[0], b.shape[0]) for a, b in frames)
    with av.open(str(out), "w") as c:
        s = None
        for a, b in frames:
            img = np.zeros((h + h % 2, a.shape[1] + b.shape[1] + 4, 3), np.uint8)
            img[: a.shape[0], : a.shape[1]] = a[..., :3]
            img[: b.shape[0], a.shape[1] + 4:] = b[..., :3]
            if img.shape[1] % 2:
                img = img[:, :-1]
            if s is None:
                s = c.add_stream("libx264", rate=max(1, round(fps)))
                s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return out
