"""The task registry: an explicit dict from task name to (environment class, config class).

Classes are named by module path and imported on demand, so listing tasks needs no simulator.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from robolearn.core.env import BatchedEnv, EnvCfg
from robolearn.core.errors import RobolearnError


@dataclass(frozen=True)
class TaskEntry:
    """Where a task's environment and config classes live."""

    env: str  # "module:Class"
    cfg: str  # "module:Class"
    description: str
    extra: str = ""  # optional dependency group the task needs ("" = none)


TASKS: dict[str, TaskEntry] = {
    "quadrotor-hover": TaskEntry(
        "robolearn.envs.quadrotor.env:HoverEnv",
        "robolearn.envs.quadrotor.env:HoverCfg",
        "Crazyflie 2.1: recover from a random state and hold a goal position",
    ),
    "quadrotor-track": TaskEntry(
        "robolearn.envs.quadrotor.env:TrackEnv",
        "robolearn.envs.quadrotor.env:TrackCfg",
        "Crazyflie 2.1: follow a figure-eight (Lissajous) reference",
    ),
    "arm-reach": TaskEntry(
        "robolearn.envs.manipulation.arm:ReachEnv",
        "robolearn.envs.manipulation.arm:ReachCfg",
        "Franka-class arm (MuJoCo): move the gripper to a random goal position",
        extra="sim",
    ),
    "arm-lift": TaskEntry(
        "robolearn.envs.manipulation.arm:LiftEnv",
        "robolearn.envs.manipulation.arm:LiftCfg",
        "Franka-class arm (MuJoCo): grasp a 4 cm cube and lift it 10 cm",
        extra="sim",
    ),
    "arm-pick-place": TaskEntry(
        "robolearn.envs.manipulation.arm:PickPlaceEnv",
        "robolearn.envs.manipulation.arm:PickPlaceCfg",
        "Franka-class arm (MuJoCo): carry a cube to a goal on the table and put it down",
        extra="sim",
    ),
    "arm-peg-insert": TaskEntry(
        "robolearn.envs.manipulation.arm:PegInsertEnv",
        "robolearn.envs.manipulation.arm:PegInsertCfg",
        "Franka-class arm (MuJoCo): insert a square peg into a hole with 2 mm clearance",
        extra="sim",
    ),
    "bimanual-transfer-cube": TaskEntry(
        "robolearn.envs.manipulation.bimanual:TransferCubeEnv",
        "robolearn.envs.manipulation.bimanual:TransferCubeCfg",
        "ALOHA-class bimanual arms (MuJoCo): the right arm picks up a cube and hands it to the left arm",
        extra="sim",
    ),
    "bimanual-insertion": TaskEntry(
        "robolearn.envs.manipulation.bimanual:InsertionEnv",
        "robolearn.envs.manipulation.bimanual:InsertionCfg",
        "ALOHA-class bimanual arms (MuJoCo): pick up a peg and a socket, insert the peg in mid-air",
        extra="sim",
    ),
    "push-t": TaskEntry(
        "robolearn.envs.manipulation.pusht:PushTEnv",
        "robolearn.envs.manipulation.pusht:PushTCfg",
        "Planar pusher (MuJoCo): push a T block onto a fixed goal pose (Diffusion Policy's Push-T, coverage metric)",
        extra="sim",
    ),
    "quadruped-walk": TaskEntry(
        "robolearn.envs.quadruped.env:WalkEnv",
        "robolearn.envs.quadruped.env:WalkCfg",
        "Go1-class quadruped (MuJoCo): track a velocity command (vx, vy, yaw rate) on terrains",
        extra="sim",
    ),
    "quadruped-hind-legs": TaskEntry(
        "robolearn.envs.quadruped.env:HindLegsEnv",
        "robolearn.envs.quadruped.env:HindLegsCfg",
        "Go1-class quadruped (MuJoCo): stand up on the two hind legs and walk on them",
        extra="sim",
    ),
    "robosuite-lift": TaskEntry(
        "robolearn.envs.robosuite_env:RobosuiteEnv",
        "robolearn.envs.robosuite_env:RobosuiteCfg",
        "robosuite 1.5 Lift, Panda (runs in .venv-robosuite: robosuite needs MuJoCo <= 3.9; `make ext-envs`)",
        extra="robosuite",
    ),
    "robosuite-stack": TaskEntry(
        "robolearn.envs.robosuite_env:RobosuiteStackEnv",
        "robolearn.envs.robosuite_env:RobosuiteLongCfg",
        "robosuite 1.5 Stack, Panda: cube A onto cube B (.venv-robosuite)",
        extra="robosuite",
    ),
    "robosuite-door": TaskEntry(
        "robolearn.envs.robosuite_env:RobosuiteDoorEnv",
        "robolearn.envs.robosuite_env:RobosuiteDoorCfg",
        "robosuite 1.5 Door, Panda: turn the handle, open the door (.venv-robosuite)",
        extra="robosuite",
    ),
    "robosuite-pick-place-can": TaskEntry(
        "robolearn.envs.robosuite_env:RobosuitePickPlaceCanEnv",
        "robolearn.envs.robosuite_env:RobosuiteLongCfg",
        "robosuite 1.5 PickPlaceCan (robomimic 'can'), Panda: the can into its bin (.venv-robosuite)",
        extra="robosuite",
    ),
    "robosuite-nut-assembly-square": TaskEntry(
        "robolearn.envs.robosuite_env:RobosuiteNutAssemblySquareEnv",
        "robolearn.envs.robosuite_env:RobosuiteLongCfg",
        "robosuite 1.5 NutAssemblySquare (robomimic 'square'), Panda: the nut onto its peg (.venv-robosuite)",
        extra="robosuite",
    ),
}


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def entry(task: str) -> TaskEntry:
    """The registry entry of `task`, or an error listing the known tasks."""
    if task not in TASKS:
        raise RobolearnError(f"unknown task '{task}'; known tasks: {', '.join(TASKS)}")
    return TASKS[task]


def cfg_class(task: str) -> type[EnvCfg]:
    """The config dataclass of `task`."""
    return _load(entry(task).cfg)


def env_class(task: str) -> type[BatchedEnv]:
    """The environment class of `task`."""
    return _load(entry(task).env)


def make(task: str, cfg: EnvCfg | None = None, seed: int = 0, **overrides: Any) -> BatchedEnv:
    """Build `task` from `cfg` (default: the task's defaults) with keyword overrides of config fields."""
    cfg = cfg if cfg is not None else cfg_class(task)()
    if overrides:
        from dataclasses import replace

        cfg = replace(cfg, **overrides)
    return env_class(task)(cfg, seed=seed)
