"""robosuite-lift: robosuite 1.5 stepped in its own venv (.venv-robosuite) behind the batched-env contract.

Skips with a one-line reason when the venv is missing (`make ext-envs` builds it).
"""

from __future__ import annotations

import pytest
import torch

from robolearn.core.env import NonFiniteActionError
from robolearn.core.errors import MissingExtraError, RobolearnError
from robolearn.envs import registry
from robolearn.eval.external import external_python

MISSING = None if external_python("robosuite").exists() else (
    f"no robosuite venv at {external_python('robosuite').parent.parent} (create it with `make ext-envs`)")
needs_robosuite = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def test_missing_venv_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(MissingExtraError, match=r"robosuite-lift: robosuite 1.5 needs MuJoCo <= 3.9.*make ext-envs"):
        registry.make("robosuite-lift", num_envs=1, python=str(tmp_path / "nope" / "bin" / "python"))


@needs_robosuite
def test_robosuite_lift_steps_resets_and_moves_where_commanded() -> None:
    env = registry.make("robosuite-lift", num_envs=2, seed=0, episode_length_s=0.5)  # 10 steps at 20 Hz
    try:
        obs = env.reset()
        assert {k: tuple(v.shape) for k, v in obs.items()} == {"policy": (2, 32), "critic": (2, 42)}
        assert torch.isfinite(obs["critic"]).all()
        cube = obs["critic"][:, 32:35]
        assert not torch.allclose(cube[0], cube[1])  # per-env seeds: different cube placements
        eef = lambda o: o["policy"][:, 21:24]  # noqa: E731  robot0_eef_pos
        z0 = eef(obs)[:, 2].clone()
        up = torch.zeros(2, 7)
        up[:, 2] = 1.0  # +z translation, gripper open (-1 … 1 closed: 0 is half)
        for _ in range(4):
            res = env.step(up)
        assert (eef(res.obs)[:, 2] > z0 + 0.02).all()  # the end effector rose (OSC, ≤ 5 cm a step)
        assert torch.isfinite(res.reward).all() and not res.truncated.any()
        for _ in range(6):
            res = env.step(torch.zeros(2, 7))
        assert res.truncated.all() and (env.episode_length == 0).all()  # time limit, auto-reset
        assert "episode/return/task" in res.info["log"] and "episode/success" in res.info["log"]
        other = registry.make("robosuite-lift", num_envs=2, seed=5, episode_length_s=0.5)
        try:  # the physics travels with state_dict: the other env's worker now shows this env's scene
            other.load_state_dict(env.state_dict())
            assert torch.equal(other._observe()["critic"], env._observe()["critic"])
        finally:
            other.close()
        # a resumed env (same seed: same object sizes) steps bit-exactly as the original: the controllers' goals
        # and the gripper's rate-limited command travel with the physics
        for _ in range(3):
            env.step(torch.rand(2, 7, generator=torch.Generator().manual_seed(1)) * 2 - 1)
        twin = registry.make("robosuite-lift", num_envs=2, seed=0, episode_length_s=0.5)
        try:
            twin.step(torch.ones(2, 7))  # somewhere else first
            twin.load_state_dict(env.state_dict())
            gen = torch.Generator().manual_seed(2)
            for _ in range(5):
                a = torch.rand(2, 7, generator=gen) * 2 - 1
                assert torch.equal(twin.step(a).obs["critic"], env.step(a).obs["critic"])
        finally:
            twin.close()
        with pytest.raises(NonFiniteActionError, match=r"env ids \[1\]"):
            env.step(torch.tensor([[0.0] * 7, [float("nan")] + [0.0] * 6]))
        with pytest.raises(RobolearnError, match="action shape"):
            env.step(torch.zeros(2, 6))
    finally:
        env.close()
    assert env._proc.poll() is not None  # the worker is gone


@needs_robosuite
@pytest.mark.parametrize("task", ["robosuite-stack", "robosuite-door", "robosuite-pick-place-can",
                                  "robosuite-nut-assembly-square"])
def test_more_robosuite_tasks_observe_their_objects_and_run_episodes(task: str) -> None:
    env = registry.make(task, num_envs=2, seed=0, episode_length_s=0.25)  # 5 steps at 20 Hz
    try:
        obs, critic = env.reset(), env.spec.obs_dims["critic"]
        assert {k: tuple(v.shape) for k, v in obs.items()} == {"policy": (2, 32), "critic": (2, critic)}
        objects = obs["critic"][:, 32:]  # this task's object observations (the worker checked every key exists)
        assert torch.isfinite(objects).all() and objects.abs().sum() > 0
        if task != "robosuite-door":  # the door's placement is fixed; the objects of the others are placed at random
            assert not torch.allclose(objects[0], objects[1])
        for _ in range(5):
            res = env.step(torch.zeros(2, 7))
        assert res.truncated.all() and torch.isfinite(res.reward).all()
        assert "episode/success" in res.info["log"]
    finally:
        env.close()
    assert registry.entry(task).extra == "robosuite" and task in registry.TASKS


@needs_robosuite
def test_robosuite_cameras_render_upright_images_into_the_policy_group() -> None:
    env = registry.make("robosuite-lift", num_envs=2, seed=0, cameras=("agentview", "robot0_eye_in_hand"),
                        image_size=(48, 64))
    try:
        obs = env.reset()
        assert env.image_shapes() == {"rgb_agentview": (48, 64, 3), "rgb_robot0_eye_in_hand": (48, 64, 3)}
        assert {k: (tuple(v.shape), v.dtype) for k, v in obs["policy"].items()} == {
            "state": ((2, 32), torch.float32), "rgb_agentview": ((2, 48, 64, 3), torch.uint8),
            "rgb_robot0_eye_in_hand": ((2, 48, 64, 3), torch.uint8)}
        front = obs["policy"]["rgb_agentview"].float()
        # upright: the robot and the floor behind it at the top, the white table in front at the bottom
        assert front[:, -12:].mean() > front[:, :12].mean() + 20
        hand = obs["policy"]["rgb_robot0_eye_in_hand"].clone()
        up = torch.zeros(2, 7)
        up[:, 2] = 1.0
        for _ in range(3):
            res = env.step(up)
        moved = (res.obs["policy"]["rgb_robot0_eye_in_hand"].float() - hand.float()).abs().mean()
        assert moved > 2.0, f"the wrist camera did not see the arm move ({moved:.2f} levels)"
    finally:
        env.close()
