"""One push-t artifact from the same start states in robolearn's push-t (MuJoCo) and in gym-pusht (pymunk).

    PYTHONPATH=. python tests/eval/pusht_same_starts.py ART [--episodes 50] [--seed 12345] [--unwrapped]

Start states (agent x, y, block x, y [px], angle [rad]) are drawn by push-t's `sample_initial_states` (gym-pusht's
reset ranges) and put into both simulators (`set_states`; gym-pusht's `reset(options={"reset_to_state": s})`).
The artifact runs through the robot-side runtime on both sides: here in the main venv, there in `.venv-gym-pusht`
through the adapter of `robolearn.eval.external` (this file runs again there as the worker). `--unwrapped`
reproduces the adapter's old angle bug (gym-pusht's angle handed over as −angle_px in (−2π, 0]). Prints one JSON
line: success rate, mean initial / max coverage on each side and the per-episode max coverages.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def gym_pusht_worker(artifact: str, starts: list[list[float]], unwrapped: bool) -> list[dict[str, float]]:
    """In .venv-gym-pusht: every start rolled out for gym-pusht's 300 steps (stops at success)."""
    import gym_pusht  # noqa: F401
    import gymnasium as gym

    from robolearn.eval import external
    from robolearn.export.runtime import PolicyRuntime

    if unwrapped:  # the adapter before the fix: angle = -angle_px, not wrapped
        wrapped = external.pusht_px_to_world

        def old(state_px: np.ndarray) -> np.ndarray:
            out = wrapped(state_px)
            out[..., 4] = -np.asarray(state_px, np.float64)[..., 4]
            return out

        external.pusht_px_to_world = old
    rt = PolicyRuntime.load(artifact)
    kwargs, observe, to_env = external._pusht_episode_fns(rt)
    env = gym.make("gym_pusht/PushT-v0", **kwargs)
    out = []
    for s in starts:
        obs, _ = env.reset(seed=0, options={"reset_to_state": s})
        rt.reset()
        init = float(env.unwrapped._get_coverage())
        best, success = init, False
        for _ in range(300):
            obs, _, terminated, _, info = env.step(to_env(rt.to_physical(rt.act(observe(obs)))))
            best = max(best, float(info["coverage"]))
            if terminated:
                success = True
                break
        out.append({"initial": init, "max": best, "success": float(success)})
    return out


def robolearn_side(artifact: Path, starts_px: np.ndarray) -> list[dict[str, float]]:
    """The same starts in robolearn's push-t, one env each, through the runtime."""
    import torch

    from robolearn.envs import registry
    from robolearn.envs.manipulation.pusht import px_to_world
    from robolearn.export.runtime import PolicyRuntime

    rt = PolicyRuntime.load(artifact)
    n = len(starts_px)
    env = registry.make("push-t", num_envs=n, seed=0)
    env.reset()
    env.set_states(torch.arange(n), px_to_world(torch.from_numpy(starts_px)))
    obs = env._observe()
    init = env.coverage.clone()
    best, success = init.clone(), torch.zeros(n)
    live = torch.ones(n, dtype=torch.bool)
    for _ in range(env.cfg.max_episode_steps):
        res = env.step(torch.from_numpy(rt.act(obs["policy"].numpy())))
        obs = res.obs
        if "episode" in res.info:  # finished envs report their episode before the auto-reset
            ids = res.info["episode"]["env_ids"]
            new = live[ids]
            best[ids[new]] = res.info["episode"]["max_coverage"][new]
            success[ids[new]] = res.info["episode"]["success"][new].float()
            live[ids] = False
        if not live.any():
            break
    return [{"initial": float(i), "max": float(b), "success": float(s)}
            for i, b, s in zip(init, best, success, strict=True)]


def summary(side: list[dict[str, float]]) -> dict[str, float]:
    return {"success_rate": float(np.mean([e["success"] for e in side])),
            "mean_initial_coverage": float(np.mean([e["initial"] for e in side])),
            "mean_max_coverage": float(np.mean([e["max"] for e in side]))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("artifact")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--unwrapped", action="store_true", help="gym-pusht side with the old, unwrapped angle")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # JSON file of starts: run the gym-pusht side
    args = p.parse_args()
    if args.worker:
        starts = json.loads(Path(args.worker).read_text())
        print(json.dumps(gym_pusht_worker(args.artifact, starts, args.unwrapped)))
        return

    import tempfile

    import torch

    from robolearn.envs import registry
    from robolearn.eval.external import venv_python

    torch.set_num_threads(1)
    env = registry.make("push-t", num_envs=1, seed=args.seed)
    starts = env.sample_initial_states(args.episodes).double().numpy()
    ours = robolearn_side(Path(args.artifact), starts)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(starts.tolist(), f)
    cmd = [str(venv_python("gym-pusht")), __file__, str(Path(args.artifact).resolve()), "--worker", f.name]
    if args.unwrapped:
        cmd.append("--unwrapped")
    env_vars = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env_vars |= {"PYTHONPATH": str(ROOT), "SDL_VIDEODRIVER": "dummy", "PYGAME_HIDE_SUPPORT_PROMPT": "1",
                 "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env_vars)
    os.unlink(f.name)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    angles = np.mod(starts[:, 4], 2 * math.pi)
    print(json.dumps({"episodes": args.episodes, "seed": args.seed, "unwrapped": args.unwrapped,
                      "robolearn": summary(ours), "gym_pusht": summary(theirs),
                      "start_angle_px_mod_2pi_mean": float(angles.mean()),
                      "max_coverage": {"robolearn": [round(e["max"], 3) for e in ours],
                                       "gym_pusht": [round(e["max"], 3) for e in theirs]}}))


if __name__ == "__main__":
    main()
