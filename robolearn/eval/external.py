"""Evaluate an exported policy artifact on an external benchmark (gym-pusht, gym-aloha) in its own virtualenv.

External benchmark packages pin their own simulator/OpenCV releases, so they never enter the main environment.
Each lives in a virtualenv of its own (`make ext-envs` builds `.venv-gym-pusht`) holding the benchmark, numpy,
onnxruntime, safetensors, pyyaml and robolearn installed without its dependencies — no torch, no MuJoCo 4. The
parent (`robolearn eval ARTIFACT --external gym-pusht`) checks the artifact against the benchmark, then runs this
module as a worker with that venv's python (`python -m robolearn.eval.external worker ...`); the worker loads
the artifact through the robot-side runtime (`PolicyRuntime.load`) and rolls it out, which is also the proof that
an exported artifact runs outside the training environment. Only numpy and the runtime are imported here at
module level, so the worker imports nothing the external venv lacks.

gym-pusht ↔ robolearn `push-t` (robolearn/envs/manipulation/pusht.py, 1 px = 1 mm, origin at the workspace centre,
y up): observation terms agent_pos, block_pos [m] and block_angle [rad] are gym-pusht's state through `px_to_world`
with the angle wrapped to [0, 2π) as push-t observes it (`pusht_px_to_world`), and `keypoints` (push-t's
`observation="keypoints"`) the T's corners at that pose (`pusht_keypoints`);
the action (normalized, a ↦ 0.256 a m through the manifest's scale/offset) goes back to gym-pusht's target pixels
through `world_to_px`. With a camera input (`observation.images.top`) gym-pusht runs with obs_type
"pixels_agent_pos", rendered at the artifact's image size. Success is gym-pusht's own `is_success`
(coverage > 0.95); the report also gives the mean over episodes of each episode's maximum coverage.

gym-aloha ↔ robolearn `bimanual-transfer-cube` / `bimanual-insertion` (joint_pos action mode): see `_worker_aloha`;
success is gym-aloha's `is_success` (reward 4, ACT's last stage), the report gives the mean of each episode's
maximum reward (0…4). gym-aloha renders three 480 x 640 views every step (~0.5 s a step on a 2-core CPU without a
GPU), so `max_steps` exists to keep checks short.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import RobolearnError

ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the `robolearn` package (put on the worker's PYTHONPATH, so it runs this very code)."""
VENVS_ENV = "ROBOLEARN_EXT_VENVS"
"""Environment variable: directory holding the `.venv-<benchmark>` virtualenvs (default: the repository root)."""
PX = 0.001
"""One gym-pusht pixel in metres (as robolearn.envs.manipulation.pusht.PX)."""


class ExternalEvalError(RobolearnError):
    """An external evaluation cannot run: unknown benchmark, missing venv, wrong artifact, or the worker failed."""


# ---- push-t <-> gym-pusht (numpy twins of robolearn.envs.manipulation.pusht's torch functions)


def pusht_px_to_world(state_px: np.ndarray) -> np.ndarray:
    """gym-pusht state (..., 5) [px, rad] → push-t's observation (agent x, y, block x, y [m], angle [rad]).

    The angle is wrapped to [0, 2π), as push-t observes it: gym-pusht reports angle_px in [0, 2π), and the
    flipped y axis makes it −angle_px in (−2π, 0], a range no push-t policy saw in training.
    """
    s = np.asarray(state_px, dtype=np.float64)
    out = np.empty(s.shape, dtype=np.float32)
    out[..., 0:4:2] = (s[..., 0:4:2] - 256) * PX
    out[..., 1:4:2] = (256 - s[..., 1:4:2]) * PX
    out[..., 4] = np.mod(-s[..., 4], 2 * math.pi)  # angle = −angle_px, wrapped
    out[..., 4] = np.where(out[..., 4] >= 2 * math.pi, 0.0, out[..., 4])  # float32 rounding of 2π − tiny
    return out


PUSHT_RECTS = (((0.0, -15 * PX), (60 * PX, 15 * PX)), ((0.0, -75 * PX), (15 * PX, 45 * PX)))
"""The T's bar and stem: centre and half sizes in its frame [m] (push-t's BAR and STEM)."""


def pusht_keypoints(block: np.ndarray) -> np.ndarray:
    """(16,) the T's corners at a block reference pose (x, y [m], angle [rad]): push-t's `keypoints` observation.

    Bar first, then stem, each counter-clockwise from its bottom-left corner in the T's frame (push-t's order).
    """
    x, y, a = (float(v) for v in block)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    signs = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    pts = [np.array([x, y]) + rot @ np.asarray(c) + (signs * np.asarray(h)) @ rot.T for c, h in PUSHT_RECTS]
    return np.concatenate(pts).reshape(-1).astype(np.float32)


def pusht_world_to_px(xy: np.ndarray) -> np.ndarray:
    """A position (..., 2) [m] in push-t's frame → gym-pusht pixels (x right, y down, origin at the corner)."""
    p = np.asarray(xy, dtype=np.float64)
    return np.stack((p[..., 0] / PX + 256, 256 - p[..., 1] / PX), -1)


# ---- benchmarks


@dataclasses.dataclass(frozen=True)
class ExternalBenchmark:
    """An external benchmark: the robolearn tasks whose artifacts it evaluates, and how its venv is made."""

    name: str
    tasks: tuple[str, ...]
    packages: tuple[str, ...]
    """What `make ext-envs` installs into the venv besides robolearn (--no-deps) and the runtime's imports."""
    description: str

    @property
    def venv_name(self) -> str:
        """Directory name of the benchmark's virtualenv."""
        return f".venv-{self.name}"


BENCHMARKS: dict[str, ExternalBenchmark] = {
    "gym-pusht": ExternalBenchmark("gym-pusht", ("push-t",), ("gym-pusht",),
                                   "Push-T (pymunk), coverage-based success (Chi et al. 2023; LeRobot)"),
    "gym-aloha": ExternalBenchmark("gym-aloha", ("bimanual-transfer-cube", "bimanual-insertion"), ("gym-aloha",),
                                   "ACT's simulated ALOHA transfer-cube and insertion (dm_control, MuJoCo 3.x)"),
}
ALOHA_IDS = {"bimanual-transfer-cube": "gym_aloha/AlohaTransferCube-v0",
             "bimanual-insertion": "gym_aloha/AlohaInsertion-v0"}
ALOHA_OBS = ("left_joint_pos", "left_gripper", "right_joint_pos", "right_gripper",
             "left_joint_vel", "left_gripper_vel", "right_joint_vel", "right_gripper_vel")
"""robolearn's bimanual policy terms; gym-aloha's qpos (14) then qvel (14), same order and units."""

RUNTIME_PACKAGES = ("numpy", "pyyaml", "safetensors", "onnxruntime")
"""What `import robolearn.export.runtime` needs in an external venv (robolearn itself goes in with --no-deps)."""


def external_python(name: str) -> Path:
    """The python of the external venv `name` ($ROBOLEARN_EXT_VENVS or the repository root, then .venv-<name>)."""
    return Path(os.environ.get(VENVS_ENV) or ROOT) / f".venv-{name}" / "bin" / "python"


def venv_python(benchmark: str) -> Path:
    """The python of the benchmark's venv (see `external_python`)."""
    return external_python(_benchmark(benchmark).name)


def venv_missing_reason(benchmark: str) -> str | None:
    """Why the benchmark's venv cannot be used (one line), or None when its python exists."""
    py = venv_python(benchmark)
    if not py.exists():
        return f"external benchmark '{benchmark}': no virtualenv at {py.parent.parent} (create it with `make ext-envs`)"
    return None


def _benchmark(name: str) -> ExternalBenchmark:
    if name not in BENCHMARKS:
        raise ExternalEvalError(f"unknown external benchmark '{name}'; choose from {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def evaluate_external(artifact: str | Path, benchmark: str, *, episodes: int = 50, seed: int = 0,
                      timeout_s: float | None = None, trajectories: str | Path | None = None,
                      max_steps: int | None = None) -> dict[str, Any]:
    """Roll the artifact out on `benchmark` in the benchmark's venv; return the worker's report.

    The report holds success_rate, mean_max_coverage (gym-pusht), per-episode results, the worker's python
    (`python`) and whether torch was importable there (`torch_available`, expected False). `trajectories`:
    where the worker writes an .npz with every step's raw benchmark state and the action it was sent.
    `max_steps` cuts episodes short of the benchmark's limit (gym-aloha renders three 480 x 640 views a step).
    """
    from robolearn.export.artifact import read_manifest

    bench = _benchmark(benchmark)
    if episodes < 1:
        raise ExternalEvalError(f"--episodes must be >= 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise ExternalEvalError(f"--max-steps must be >= 1, got {max_steps}")
    artifact = Path(artifact).resolve()
    manifest = read_manifest(artifact)
    if manifest["task"] not in bench.tasks:
        raise ExternalEvalError(f"{artifact}: artifact task '{manifest['task']}' cannot be evaluated on "
                                f"'{benchmark}' (it takes {', '.join(bench.tasks)} artifacts)")
    reason = venv_missing_reason(benchmark)
    if reason is not None:
        raise ExternalEvalError(reason)
    with tempfile.TemporaryDirectory(prefix="robolearn-ext-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [str(venv_python(benchmark)), "-m", "robolearn.eval.external", "worker", benchmark, str(artifact),
               "--episodes", str(episodes), "--seed", str(seed), "--result", str(result)]
        if trajectories is not None:
            cmd += ["--trajectories", str(Path(trajectories).resolve())]
        if max_steps is not None:
            cmd += ["--max-steps", str(max_steps)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env |= {"PYTHONPATH": str(ROOT), "SDL_VIDEODRIVER": "dummy", "PYGAME_HIDE_SUPPORT_PROMPT": "1",
                "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ExternalEvalError(f"{benchmark}: the worker ran past {timeout_s} s") from None
        if proc.returncode != 0 or not result.exists():
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            raise ExternalEvalError(f"{benchmark} worker ({cmd[0]}) failed: {last.removeprefix('error: ')}")
        return json.loads(result.read_text())


# ---- the worker (runs in the external venv: numpy + the runtime + the benchmark, no torch)


def _pusht_episode_fns(runtime: Any) -> tuple[dict[str, Any], Callable[[Any], Any], Callable[[np.ndarray], Any]]:
    """gym.make kwargs, obs → runtime input, physical action [m] → gym-pusht action [px] for a push-t artifact."""
    m = runtime.manifest
    terms = [t["name"] for t in m["observation"]["terms"]]
    known = {"agent_pos": slice(0, 2), "block_pos": slice(2, 4), "block_angle": slice(4, 5), "keypoints": None}
    unknown = [t for t in terms if t not in known]
    if unknown:
        raise ExternalEvalError(f"{runtime.path}: observation terms {unknown} have no gym-pusht counterpart "
                                f"(known: {list(known)})")
    acts = [(t["name"], t["dim"]) for t in m["action"]["terms"]]
    if acts != [("agent_target", 2)]:
        raise ExternalEvalError(f"{runtime.path}: action terms {acts}; gym-pusht takes push-t's agent_target (2)")
    images = list(runtime.image_inputs)
    shapes = {s["key"]: tuple(s["shape"]) for s in m["observation"].get("inputs", []) if s["dtype"] == "uint8"}
    floats = [s for s in m["observation"].get("inputs", []) if s["dtype"] == "float32"]
    if len(images) > 1:
        raise ExternalEvalError(f"{runtime.path}: camera inputs {images}; gym-pusht renders one top view")
    kwargs: dict[str, Any] = {"obs_type": "state"}
    if images and terms != ["agent_pos"]:
        raise ExternalEvalError(f"{runtime.path}: a camera policy with state terms {terms}; gym-pusht's "
                                "pixels_agent_pos gives the image and agent_pos only")
    if images:
        h, w, _ = shapes[images[0]]
        kwargs = {"obs_type": "pixels_agent_pos", "observation_width": w, "observation_height": h}

    def observe(obs: Any) -> Any:
        if images:  # agent position only (pixels_agent_pos); the block is seen in the image
            state = pusht_px_to_world(np.concatenate([obs["agent_pos"], np.zeros(3)]))
            vec = np.concatenate([state[known[t]] for t in terms]).astype(np.float32)
            return {**{s["key"]: vec[s["offset"]:s["offset"] + s["shape"][0]] for s in floats},
                    images[0]: np.ascontiguousarray(obs["pixels"], dtype=np.uint8)}
        state = pusht_px_to_world(obs)
        return np.concatenate([pusht_keypoints(state[2:5]) if t == "keypoints" else state[known[t]]
                               for t in terms]).astype(np.float32)

    def act(target_m: np.ndarray) -> np.ndarray:
        return np.clip(pusht_world_to_px(target_m), 0.0, 512.0).astype(np.float32)

    return kwargs, observe, act


def _worker_pusht(runtime: Any, episodes: int, seed: int, traj: list[dict[str, np.ndarray]] | None,
                  max_steps: int | None = None) -> dict[str, Any]:
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    kwargs, observe, to_env = _pusht_episode_fns(runtime)
    env = gym.make("gym_pusht/PushT-v0", **kwargs)
    results = []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        runtime.reset()
        max_cov, success, steps = 0.0, False, 0
        states, actions = [], []
        while True:
            a = to_env(runtime.to_physical(runtime.act(observe(obs))))
            if traj is not None:
                u = env.unwrapped  # gym-pusht's state in px whatever the obs_type
                states.append(np.r_[tuple(u.agent.position), tuple(u.block.position), u.block.angle % (2 * math.pi)])
                actions.append(a)
            obs, _, terminated, truncated, info = env.step(a)
            steps += 1
            max_cov = max(max_cov, float(info["coverage"]))
            success = success or bool(info["is_success"])
            if terminated or truncated or (max_steps is not None and steps >= max_steps):
                break
        results.append({"seed": seed + ep, "success": success, "max_coverage": max_cov,
                        "final_coverage": float(info["coverage"]), "steps": steps})
        if traj is not None:
            traj.append({"state_px": np.array(states), "action_px": np.array(actions)})
    env.close()
    return {"success_rate": float(np.mean([r["success"] for r in results])),
            "mean_max_coverage": float(np.mean([r["max_coverage"] for r in results])),
            "mean_steps": float(np.mean([r["steps"] for r in results])),
            "per_episode": results, "versions": _versions("gym_pusht", "gymnasium", "pymunk")}


def resize_nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W, C) image (numpy only: the external venvs need no OpenCV)."""
    rows = (np.arange(h) * img.shape[0] / h).astype(np.int64)
    cols = (np.arange(w) * img.shape[1] / w).astype(np.int64)
    return np.ascontiguousarray(img[rows][:, cols])


def _worker_aloha(runtime: Any, episodes: int, seed: int, traj: list[dict[str, np.ndarray]] | None,
                  max_steps: int | None = None) -> dict[str, Any]:
    """gym-aloha rollouts of a bimanual joint_pos artifact: qpos/qvel → the policy terms, actions → gym-aloha's 14.

    Both sides order per arm (left first) 6 joint angles [rad] and the gripper normalized 0 closed … 1 open, so
    the mapping is the identity in physical units: the runtime's `to_physical` (scale/offset of the manifest) gives
    joint targets [rad] and the gripper opening 0…1, which is gym-aloha's action. qvel comes from the dm_control
    task (`get_qvel`; gym-aloha's observation keeps only qpos). The top camera (480 x 640) is resized to the
    artifact's image input; wrist cameras do not exist in gym-aloha.
    """
    import gym_aloha  # noqa: F401  (registers gym_aloha/*)
    import gymnasium as gym

    m = runtime.manifest
    terms = {t["name"]: t["dim"] for t in m["observation"]["terms"]}
    if list(terms) != list(ALOHA_OBS):
        raise ExternalEvalError(f"{runtime.path}: observation terms {list(terms)}; gym-aloha gives {list(ALOHA_OBS)}")
    acts = [t["name"] for t in m["action"]["terms"]]
    if acts != ["left_joint_pos", "left_gripper", "right_joint_pos", "right_gripper"]:
        raise ExternalEvalError(f"{runtime.path}: action terms {acts}; gym-aloha takes joint_pos actions "
                                "(action_mode joint_pos)")
    inputs = m["observation"].get("inputs", [])
    floats = [s for s in inputs if s["dtype"] == "float32"]
    images = {s["key"]: tuple(s["shape"]) for s in inputs if s["dtype"] == "uint8"}
    other = [k for k in images if k != "observation.images.top"]
    if other:
        raise ExternalEvalError(f"{runtime.path}: camera inputs {other} do not exist in gym-aloha (top only)")
    env = gym.make(ALOHA_IDS[m["task"]], obs_type="pixels_agent_pos")
    limit = env.spec.max_episode_steps if max_steps is None else max_steps
    inner = env.unwrapped._env  # dm_control Environment: physics and task (for qvel)
    results = []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        runtime.reset()
        success, steps, reward_max = False, 0, 0.0
        states, actions = [], []
        while steps < limit:
            qvel = np.asarray(inner.task.get_qvel(inner.physics), dtype=np.float32)
            vec = np.concatenate([np.asarray(obs["agent_pos"], dtype=np.float32), qvel])
            x: Any = vec
            if images:
                h, w, _ = images["observation.images.top"]
                top = obs["pixels"]["top"]
                x = {**{s["key"]: vec[s["offset"]:s["offset"] + s["shape"][0]] for s in floats},
                     "observation.images.top": top if top.shape[:2] == (h, w) else resize_nearest(top, h, w)}
            a = runtime.to_physical(runtime.act(x))
            if traj is not None:
                states.append(vec)
                actions.append(a)
            obs, reward, terminated, truncated, info = env.step(a)
            steps += 1
            reward_max = max(reward_max, float(reward))
            success = success or bool(info["is_success"])
            if terminated or truncated:
                break
        results.append({"seed": seed + ep, "success": success, "max_reward": reward_max, "steps": steps})
        if traj is not None:
            traj.append({"qpos_qvel": np.array(states), "action": np.array(actions)})
    env.close()
    return {"success_rate": float(np.mean([r["success"] for r in results])),
            "mean_max_reward": float(np.mean([r["max_reward"] for r in results])),
            "mean_steps": float(np.mean([r["steps"] for r in results])), "max_steps": limit,
            "per_episode": results, "versions": _versions("gym_aloha", "gymnasium", "mujoco", "dm_control")}


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {"gym-pusht": _worker_pusht, "gym-aloha": _worker_aloha}


def _versions(*dists: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for d in (*dists, "numpy", "onnxruntime"):
        try:
            out[d] = metadata.version(d.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[d] = "unknown"
    return out


def _worker(args: argparse.Namespace) -> int:
    """Load the artifact with the robot-side runtime and roll it out on the benchmark; write the JSON report."""
    from robolearn.export.runtime import PolicyRuntime

    t0 = time.perf_counter()
    runtime = PolicyRuntime.load(args.artifact)
    traj: list[dict[str, np.ndarray]] | None = [] if args.trajectories else None
    report = WORKERS[args.benchmark](runtime, args.episodes, args.seed, traj, args.max_steps)
    report = {"benchmark": args.benchmark, "task": runtime.manifest["task"], "artifact": str(args.artifact),
              "policy": runtime.manifest["network"]["kind"], "episodes": args.episodes, "seed": args.seed,
              **report, "python": sys.executable, "torch_available": importlib.util.find_spec("torch") is not None,
              "wall_s": round(time.perf_counter() - t0, 3)}
    if traj is not None:
        np.savez_compressed(args.trajectories, **{f"{k}_{i}": v for i, ep in enumerate(traj) for k, v in ep.items()})
    Path(args.result).write_text(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m robolearn.eval.external worker BENCHMARK ARTIFACT ...` (what `evaluate_external` runs)."""
    p = argparse.ArgumentParser(prog="python -m robolearn.eval.external")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="roll an artifact out on an external benchmark (inside its venv)")
    w.add_argument("benchmark", choices=sorted(WORKERS))
    w.add_argument("artifact")
    w.add_argument("--episodes", type=int, default=50)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--result", required=True, help="where to write the JSON report")
    w.add_argument("--trajectories", help="optional .npz of per-step benchmark states and actions")
    w.add_argument("--max-steps", type=int, help="cut episodes shorter than the benchmark's limit")
    args = p.parse_args(argv)
    try:
        return _worker(args)
    except RobolearnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
