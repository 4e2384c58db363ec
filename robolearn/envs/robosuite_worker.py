"""The robosuite side of `robosuite-*` tasks: N robosuite envs in one process of the robosuite venv, over pipes.

robosuite 1.5 needs MuJoCo <= 3.9 while robolearn uses MuJoCo 4, so it runs in `.venv-robosuite` (`make ext-envs`)
as `python -m robolearn.envs.robosuite_worker` and talks to `robolearn.envs.robosuite_env.RobosuiteEnv` over its
stdin/stdout. This module imports only numpy at module level (robosuite inside the worker), and the wire format
is numpy's own .npy (readable across numpy 1.x/2.x, which the two venvs hold):

    message = one JSON line {"cmd" | "error" | ..., "arrays": [names], "sizes": [bytes]}, then the .npy records

Commands: init {env_name, robot, control_freq, num_envs, seed, policy_keys, critic_keys, cameras, image_size} →
dims; reset [ids] → policy, critic (and rgb_<camera> (N, H, W, 3) uint8 per camera, rows top first) of those envs;
step [action (N, A)] → policy, critic, images, reward, success;
get_state → state (N, L) uint8 + lengths (N,): each env's `snapshot`; set_state [state, lengths] → policy, critic;
close.
"""

from __future__ import annotations

import io
import json
import os
import sys
import traceback
from typing import IO, Any

import numpy as np


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def send(f: IO[bytes], header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write one message: the JSON header line (array names and byte sizes), then each array as .npy."""
    blobs = {k: _npy(a) for k, a in (arrays or {}).items()}
    f.write((json.dumps({**header, "arrays": list(blobs), "sizes": [len(b) for b in blobs.values()]}) + "\n")
            .encode())
    for b in blobs.values():
        f.write(b)
    f.flush()


def recv(f: IO[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read one message; raises EOFError when the other side has gone."""
    line = f.readline()
    if not line:
        raise EOFError("pipe closed")
    header = json.loads(line)
    arrays = {}
    for name, size in zip(header.get("arrays", []), header.get("sizes", []), strict=True):
        blob = f.read(size)
        if len(blob) != size:
            raise EOFError("pipe closed mid-message")
        arrays[name] = np.lib.format.read_array(io.BytesIO(blob), allow_pickle=False)
    return header, arrays


_ENV_ATTRS = ("timestep", "cur_time", "done")
"""A robosuite env's own attributes that change while it runs (the rest is configuration)."""


def _stateful(env: Any) -> dict[str, Any]:
    """The objects whose attributes hold a robosuite env's state besides MuJoCo's.

    They are the env, each robot's part controllers (arm OSC goals and references, gripper), its gripper models
    (their rate-limited command) and the env's observables (sampling clocks and last values: an observation forced
    fresh after a load would shift them against the original's).
    """
    out: dict[str, Any] = {"env": env}
    for i, robot in enumerate(env.robots):
        for name, part in robot.composite_controller.part_controllers.items():
            out[f"robot{i}.{name}"] = part
        for name, gripper in robot.gripper.items():
            out[f"robot{i}.gripper.{name}"] = gripper
    for name, observable in env._observables.items():  # sampling clocks and the last sampled values
        out[f"observable.{name}"] = observable
    return out


def _mujoco_view(a: np.ndarray) -> bool:
    """Whether `a` is a view of MuJoCo's memory (it follows the physics; restoring the physics restores it)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return not isinstance(a, np.ndarray)


def snapshot(env: Any) -> bytes:
    """A robosuite env's whole state as an .npz (no pickles).

    It holds MuJoCo's integration state and every numeric or None attribute of `_stateful`'s objects; an array that
    aliases another attribute is recorded as that alias. With this a restored env steps bit-exactly as the
    original; the physics alone is not enough, since the OSC goal and reference and the gripper's rate-limited
    command live in Python objects.
    """
    import mujoco

    m, d = env.sim.model._model, env.sim.data._data
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(m, spec))
    mujoco.mj_getState(m, d, physics, spec)
    arrays: dict[str, np.ndarray] = {"physics": physics}
    seen: dict[int, str] = {}
    for prefix, obj in _stateful(env).items():
        for k, v in vars(obj).items():
            if prefix == "env" and k not in _ENV_ATTRS:
                continue
            if isinstance(v, np.ndarray):
                if v.dtype == object or _mujoco_view(v):
                    continue
                if id(v) in seen:  # e.g. OSC's initial_ref_pos *is* its ref_pos, updated in place
                    arrays[f"{prefix}:{k}:alias:{seen[id(v)]}"] = np.zeros(0)
                    continue
                seen[id(v)] = f"{prefix}:{k}"
                arrays[f"{prefix}:{k}"] = v
            elif isinstance(v, (bool, int, float, np.number)):
                arrays[f"{prefix}:{k}"] = np.asarray(v)
            elif v is None:
                arrays[f"{prefix}:{k}:none"] = np.zeros(0)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def restore(env: Any, blob: bytes) -> None:
    """Put `snapshot`'s state into `env` (built with the same task, robot and seed)."""
    import mujoco

    z = np.load(io.BytesIO(blob), allow_pickle=False)
    m, d = env.sim.model._model, env.sim.data._data
    mujoco.mj_setState(m, d, z["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(m, d)
    objs = _stateful(env)
    aliases = []
    for key in z.files:
        if key == "physics":
            continue
        prefix, k, *extra = key.split(":")
        if prefix not in objs:
            raise KeyError(f"the saved state has '{prefix}', this robosuite env does not (another task or robot?)")
        if extra and extra[0] == "alias":
            aliases.append((objs[prefix], k, extra[1], extra[2]))  # key: prefix:k:alias:src_prefix:src_k
            continue
        if extra:  # none
            setattr(objs[prefix], k, None)
            continue
        a, old = z[key], getattr(objs[prefix], k, None)
        setattr(objs[prefix], k, a.item() if a.ndim == 0 and not isinstance(old, np.ndarray) else a.copy())
    for obj, k, src_prefix, src_k in aliases:
        setattr(obj, k, getattr(objs[src_prefix], src_k))


class _Envs:
    """The N robosuite envs of one robolearn env (cameras rendered offscreen when asked for)."""

    def __init__(self, c: dict[str, Any]) -> None:
        import robosuite as suite

        self.cameras = list(c.get("cameras") or [])
        h, w = c.get("image_size") or (84, 84)
        cams = {"camera_names": self.cameras, "camera_heights": int(h), "camera_widths": int(w)} if self.cameras \
            else {}
        self.envs = [suite.make(c["env_name"], robots=c["robot"], has_renderer=False,
                                has_offscreen_renderer=bool(self.cameras), use_camera_obs=bool(self.cameras), **cams,
                                reward_shaping=True, control_freq=c["control_freq"], horizon=10**9, ignore_done=True,
                                hard_reset=False, seed=c["seed"] + i)
                     for i in range(c["num_envs"])]
        from robosuite import macros  # robosuite's images are bottom row first unless its convention says otherwise

        self.flip = getattr(macros, "IMAGE_CONVENTION", "opengl") == "opengl"
        self.keys = {"policy": list(c["policy_keys"]), "critic": list(c["critic_keys"])}
        self.obs = [e.reset() for e in self.envs]
        missing = sorted({k for ks in self.keys.values() for k in ks} - set(self.obs[0]))
        if missing:
            raise KeyError(f"robosuite {c['env_name']} ({c['robot']}) has no observations {missing} "
                           f"(has {sorted(self.obs[0])})")
        self.action_dim = int(self.envs[0].action_spec[0].shape[0])

    def group(self, name: str, ids: list[int]) -> np.ndarray:
        return np.stack([np.concatenate([np.ravel(self.obs[i][k]) for k in self.keys[name]]) for i in ids])

    def observe(self, ids: list[int]) -> dict[str, np.ndarray]:
        out = {"policy": self.group("policy", ids).astype(np.float32),
               "critic": self.group("critic", ids).astype(np.float32)}
        for cam in self.cameras:
            img = np.stack([self.obs[i][f"{cam}_image"] for i in ids])
            out[f"rgb_{cam}"] = np.ascontiguousarray(img[:, ::-1] if self.flip else img, dtype=np.uint8)
        return out

    def reset(self, ids: list[int]) -> dict[str, np.ndarray]:
        for i in ids:
            self.obs[i] = self.envs[i].reset()
        return self.observe(ids)

    def get_state(self) -> dict[str, np.ndarray]:
        """Every env's whole state as bytes (`snapshot`), zero-padded to one (N, L) uint8 array, and the lengths."""
        blobs = [snapshot(e) for e in self.envs]
        out = np.zeros((len(blobs), max(len(b) for b in blobs)), np.uint8)
        for i, b in enumerate(blobs):
            out[i, :len(b)] = np.frombuffer(b, np.uint8)
        return {"state": out, "lengths": np.array([len(b) for b in blobs], np.int64)}

    def set_state(self, state: np.ndarray, lengths: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Restore `get_state`'s output (or, without lengths, MuJoCo's flattened sim state of earlier versions)."""
        for i, e in enumerate(self.envs):
            if lengths is not None:  # the observables' values came with it: read, not re-sampled
                restore(e, state[i, :int(lengths[i])].tobytes())
                self.obs[i] = e._get_observations()
                continue
            e.sim.set_state_from_flattened(state[i])  # the physics only: controllers read it, their goals reset
            e.sim.forward()
            for robot in e.robots:
                for part in robot.composite_controller.part_controllers.values():
                    part.update(force=True)
                robot.composite_controller.reset()
            self.obs[i] = e._get_observations(force_update=True)
        return self.observe(list(range(len(self.envs))))

    def step(self, action: np.ndarray) -> dict[str, np.ndarray]:
        reward = np.zeros(len(self.envs), np.float32)
        success = np.zeros(len(self.envs), np.bool_)
        for i, (env, a) in enumerate(zip(self.envs, action, strict=True)):
            self.obs[i], reward[i], _, _ = env.step(np.asarray(a, np.float64))
            success[i] = bool(env._check_success())
        return {**self.observe(list(range(len(self.envs)))), "reward": reward, "success": success}


def main() -> int:
    """Serve commands on stdin/stdout until `close` or EOF; errors go back as {"error": one line}."""
    out = os.fdopen(os.dup(1), "wb")  # the protocol's channel; stray prints of robosuite go to stderr
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    envs: _Envs | None = None
    while True:
        try:
            header, arrays = recv(inp)
        except EOFError:
            return 0
        cmd = header.get("cmd")
        try:
            if cmd == "close":
                send(out, {"ok": True})
                return 0
            if cmd == "init":
                envs = _Envs(header)
                d = envs.observe([0])
                send(out, {"ok": True, "policy_dim": d["policy"].shape[1], "critic_dim": d["critic"].shape[1],
                           "action_dim": envs.action_dim})
            elif envs is None:
                raise RuntimeError(f"'{cmd}' before 'init'")
            elif cmd == "reset":
                send(out, {"ok": True}, envs.reset([int(i) for i in arrays["ids"]]))
            elif cmd == "get_state":
                send(out, {"ok": True}, envs.get_state())
            elif cmd == "set_state":
                send(out, {"ok": True}, envs.set_state(arrays["state"], arrays.get("lengths")))
            elif cmd == "step":
                send(out, {"ok": True}, envs.step(arrays["action"]))
            else:
                raise RuntimeError(f"unknown command '{cmd}'")
        except Exception as e:  # one line back to the parent, the traceback to stderr
            traceback.print_exc()
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            send(out, {"error": msg})


if __name__ == "__main__":
    sys.exit(main())
