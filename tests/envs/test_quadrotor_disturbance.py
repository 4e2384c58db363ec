"""The disturbance interface on the quadrotor tasks: clipping, holding, zeroing at reset, physics, critic term."""

import pytest
import torch

from robolearn.core.env import Disturbable
from robolearn.core.errors import RobolearnError
from robolearn.envs import registry

CALM = {"init_pos": 0.0, "init_max_angle_deg": 0.0, "init_lin_vel": 0.0, "init_ang_vel": 0.0,
        "disturbance_force": 0.0, "obs_noise": {}, "randomize": {}, "disturbance_max_force": 0.1}


@pytest.mark.parametrize("task", ["quadrotor-hover", "quadrotor-track"])
def test_quadrotor_tasks_implement_the_interface(task):
    env = registry.make(task, num_envs=3)
    assert isinstance(env, Disturbable)
    assert env.disturbance_dim == 3 and env.disturbance_limit.tolist() == pytest.approx([0.3] * 3)
    assert [t.name for t in env.spec.obs_terms["critic"]].count("disturbance") == 1
    env6 = registry.make(task, num_envs=3, disturbance_max_torque=1e-3)
    assert env6.disturbance_dim == 6 and env6.spec.obs_dims["critic"] == env.spec.obs_dims["critic"] + 3


def test_set_disturbance_clips_holds_and_resets():
    env = registry.make("quadrotor-hover", num_envs=2, **CALM)
    env.reset()
    env.set_disturbance(torch.tensor([[1.0, -1.0, 0.05], [0.0, 0.0, 0.0]]))  # limit 0.1 N (CALM)
    assert env.disturbance.flatten().tolist() == pytest.approx([0.1, -0.1, 0.05, 0.0, 0.0, 0.0])
    obs = env.step(torch.zeros(2, 4)).obs
    assert env.disturbance[0].tolist() == pytest.approx([0.1, -0.1, 0.05])  # held
    assert env.sim.force_ext[0].tolist() == pytest.approx([0.1, -0.1, 0.05])
    dims = env.spec.obs_terms["critic"]
    start = sum(t.dim for t in dims[: [t.name for t in dims].index("disturbance")])
    assert obs["critic"][0, start : start + 3].tolist() == pytest.approx([1.0, -1.0, 0.5])  # ×10
    env._reset_idx(torch.tensor([0]))
    assert env.disturbance[0].abs().sum() == 0 and env.sim.force_ext[0].abs().sum() == 0
    with pytest.raises(RobolearnError, match=r"quadrotor-hover: disturbance shape \(2, 6\), expected \(2, 3\)"):
        env.set_disturbance(torch.zeros(2, 6))
    with pytest.raises(RobolearnError, match="disturbance_max_force/torque must be positive"):
        registry.make("quadrotor-hover", num_envs=2, disturbance_max_force=0.0)


def test_a_pull_accelerates_the_drone_and_a_world_torque_spins_it():
    env = registry.make("quadrotor-hover", num_envs=3, disturbance_max_torque=1e-3, **CALM)
    env.reset()
    wrench = torch.zeros(3, 6)
    wrench[1, 0] = 0.05  # +x pull of 0.05 N on env 1
    wrench[2, 5] = 1e-3  # +z (yaw) torque on env 2, world frame
    env.set_disturbance(wrench)
    for _ in range(20):
        env.step(torch.zeros(3, 4))
    vx = env.sim.lin_vel[:, 0]
    # a = F / m ≈ 0.05 / 0.027 ≈ 1.8 m/s²: after 0.2 s about 0.37 m/s
    assert float(vx[1]) == pytest.approx(0.05 / env.sim.bp.mass[1].item() * 0.2, rel=0.15)
    assert abs(float(vx[0])) < 0.02
    assert float(env.sim.ang_vel[2, 2]) > 10 * abs(float(env.sim.ang_vel[0, 2])) + 0.1
