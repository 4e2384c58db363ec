"""The quadruped tasks on real MuJoCo (CPU backend): standing, terrain, curriculum, disturbances, randomization,
latency, non-finite states and bad configs."""

import math

import pytest
import torch

from robolearn.core.errors import ConfigError, MissingExtraError, RobolearnError
from robolearn.core.math import quat_to_rotmat
from robolearn.envs import registry
from robolearn.sim.backend import import_mujoco

try:
    mujoco = import_mujoco()
except MissingExtraError as e:
    pytest.skip(str(e), allow_module_level=True)

from robolearn.envs.quadruped.env import DEFAULT_POSE, NJ  # noqa: E402

CALM = {"randomize": {}, "obs_noise": {}, "latency_steps": 0, "init_joint_noise": 0.0, "init_base_vel": 0.0}


def make(task="quadruped-walk", n=4, **kw):
    return registry.make(task, seed=1, num_envs=n, **kw)


def test_robot_stands_at_the_default_pose_under_pd_and_obs_are_finite():
    env = make(n=4, **CALM)
    obs = env.reset()
    assert obs["policy"].shape == (4, env.spec.obs_dims["policy"]) == (4, 45)
    assert obs["critic"].shape == (4, env.spec.obs_dims["critic"])
    for _ in range(100):  # 2 s, neutral action = default pose
        res = env.step(torch.zeros(4, NJ))
        assert not res.terminated.any()
        assert torch.isfinite(res.reward).all() and torch.isfinite(res.obs["critic"]).all()
    assert (env.base_pos[:, 2] > 0.22).all()  # standing, not sitting (nominal ≈ 0.26 m)
    assert (env.projected_gravity[:, 2] < -0.98).all()  # level within ~11°
    assert (env.joint_pos - torch.tensor(DEFAULT_POSE)).abs().max() < 0.2  # knees droop ~0.17 rad at kp 40
    assert env.foot_contact.all()
    # the policy terms are what the legged ROS adapter provides, in order
    names = [t.name for t in env.spec.obs_terms["policy"]]
    assert names == ["base_ang_vel", "projected_gravity", "velocity_command", "joint_pos_rel", "joint_vel",
                     "last_action"]
    assert [t.name for t in env.spec.action.terms] == ["joint_pos_target"]


def test_height_field_tiles_match_the_lookup_and_robots_start_on_their_tiles():
    env = make(n=10, terrain="mixed", terrain_levels=2, tile_size=3.0, **CALM)
    env.reset()
    m = env.model
    data = mujoco.MjData(m)
    mujoco.mj_forward(m, data)
    terrain_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "terrain")
    gen = torch.Generator().manual_seed(0)
    xy = (torch.rand(100, 2, generator=gen) * 2 - 1) * torch.tensor([env.terrain.size_x, env.terrain.size_y]) * 0.95
    lookup = env.terrain.height_at(xy)
    geomid = torch.zeros(1, dtype=torch.int32).numpy()
    for (x, y), z in zip(xy.tolist(), lookup.tolist(), strict=True):
        dist = mujoco.mj_ray(m, data, [x, y, 3.0], [0.0, 0.0, -1.0], None, 1, -1, geomid)
        assert geomid[0] == terrain_geom
        assert abs((3.0 - dist) - z) < 5e-3  # stair edges: bilinear lookup vs the field's triangles
    # 5 types in columns, stairs really have relief, every env starts at its own tile's centre
    assert env.terrain.cols == 5 and float(env.terrain.heights.max() - env.terrain.heights.min()) > 0.1
    origins = env.terrain.origins[env.terrain_level, env.terrain_type]
    assert (env.base_pos[:, :2] - origins[:, :2]).norm(dim=-1).max() < 1e-4
    assert len(set(env.terrain_type.tolist())) == 5
    for _ in range(10):
        res = env.step(torch.zeros(10, NJ))
    assert torch.isfinite(res.obs["critic"]).all()
    assert ((env.base_pos[:, 2] - env.ground_height()) > 0.2).all()  # standing on the tile, not inside it


def test_unknown_terrain_and_bad_gains_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"unknown terrain 'lava' \(config key 'terrain'\).*flat, mixed, slope"):
        make(terrain="lava")
    with pytest.raises(ConfigError, match="'kp' must be a positive number"):
        make(kp=-5.0)
    with pytest.raises(ConfigError, match="'torque_limits' needs 3 positive values"):
        make(torque_limits=(23.7, 0.0, 35.55))
    with pytest.raises(ConfigError, match="'disturbance_limit' needs 6 values"):
        make(disturbance_limit=(1.0, 2.0))
    with pytest.raises(ConfigError, match=r"unknown randomize keys \['fricton'\]"):
        make(randomize={"fricton": (0.5, 1.0)})
    with pytest.raises(ConfigError, match="randomize 'kp' range"):
        make(randomize={"kp": (1.2, 0.8)})


def test_disturbance_pushes_the_trunk_is_clipped_and_zeroed_at_reset():
    env = make(n=3, **CALM)
    env.reset()
    for _ in range(25):  # settle onto the feet
        env.step(torch.zeros(3, NJ))
    assert env.disturbance_dim == 6 and env.disturbance_limit.shape == (6,)
    start = env.base_pos.clone()
    wrench = torch.zeros(3, 6)
    wrench[0, 0] = 50.0  # +x
    wrench[1, 1] = -1000.0  # −y, far beyond the limit
    env.set_disturbance(wrench)
    lim = env.disturbance_limit
    assert env.disturbance[1, 1] == -lim[1] and env.disturbance[0, 0] == 50.0
    xfrc = torch.as_tensor(env.sim.batch.bind("xfrc_applied")[:, env.trunk])  # what MuJoCo applies
    assert torch.allclose(xfrc.float(), env.disturbance)
    for _ in range(15):
        env.step(torch.zeros(3, NJ))
    moved = env.base_pos - start
    assert moved[0, 0] > 0.05 and moved[1, 1] < -0.05  # pushed the way the force points
    assert moved[2, :2].norm() < 0.03  # the undisturbed env stays put
    assert env.disturbance[1, 1] == -lim[1]  # held until changed
    critic = env._observe()["critic"]
    assert torch.allclose(critic[:, -6:], env.disturbance)  # the critic's last term is the wrench
    env._reset_idx(torch.tensor([1]))
    assert (env.disturbance[1] == 0).all() and env.disturbance[0, 0] == 50.0
    with pytest.raises(RobolearnError, match="disturbance shape"):
        env.set_disturbance(torch.zeros(3, 3))


def test_random_pushes_use_the_disturbance_path():
    env = make(n=4, pushes=True, push_interval_s=0.1, push_duration_s=0.04, push_force=40.0, **CALM)
    env.reset()
    seen = []
    for _ in range(12):
        env.step(torch.zeros(4, NJ))
        seen.append(env.disturbance.clone())
    seen = torch.stack(seen)
    force = seen[..., :2].norm(dim=-1)
    assert (force > 0).any() and (force == 0).any()  # pushes start and end
    assert force.max() <= 40.0 + 1e-4 and (seen[..., 2:] == 0).all()  # horizontal forces only


def test_curriculum_moves_envs_up_and_down():
    env = make(n=4, terrain="stairs_up", terrain_levels=4, max_init_level=0, **CALM)
    env.reset()
    env.reset()  # placing robots (first reset) and resetting before any step judge no one
    assert env.terrain_level.tolist() == [0, 0, 0, 0]
    env.terrain_level[:] = torch.tensor([1, 1, 1, 3])
    ids = torch.arange(4)
    # hand-set distances: env 0 walked 3 m (> half a 4 m tile), env 1 was asked 4 m and covered 0 m,
    # env 2 walked 1 m of 1.5 m asked, env 3 at the top walked 3 m
    env.env_origins[0, 0] -= 3.0
    env.env_origins[2, 0] -= 1.0
    env.env_origins[3, 0] -= 3.0
    env.commanded_distance[:] = torch.tensor([4.0, 4.0, 1.5, 4.0])
    env._reset_idx(ids)
    assert env.terrain_level.tolist() == [2, 0, 1, 3]
    # and every env now starts on its new tile
    origins = env.terrain.origins[env.terrain_level, env.terrain_type]
    assert (env.base_pos[:, :2] - origins[:, :2]).norm(dim=-1).max() < 1e-4
    px, b = env.terrain.tile_px, env.terrain.border_px
    relief = [float(env.terrain.heights[b + r * px : b + (r + 1) * px].max()) for r in range(4)]
    assert relief == sorted(relief) and relief[0] < relief[3]  # harder rows, higher steps


def test_start_level_fixes_every_env_on_one_level():
    env = make(n=4, terrain="rough", terrain_levels=4, start_level=3, curriculum=False, **CALM)
    env.reset()
    assert env.terrain_level.tolist() == [3, 3, 3, 3]
    origins = env.terrain.origins[3, env.terrain_type]
    assert (env.base_pos[:, :2] - origins[:, :2]).norm(dim=-1).max() < 1e-4
    with pytest.raises(ConfigError, match=r"'start_level' must be in 0 … terrain_levels − 1 = 3 \(got 4\)"):
        make(terrain="rough", terrain_levels=4, start_level=4)


def test_randomization_changes_what_it_claims():
    rnd = {"friction": (0.4, 1.2), "payload": (-1.0, 3.0), "motor_strength": (0.8, 1.2), "kp": (0.8, 1.2),
           "kd": (0.5, 1.5)}
    env = make(n=6, randomize=rnd, latency_steps=3, kp=40.0, kd=1.0)
    env.reset()
    sim, feet = env.sim, env.foot_geoms
    friction = sim.get_params("geom_friction", feet)
    assert torch.allclose(friction, env.friction.expand(6, 4), atol=1e-5)
    assert env.friction.std() > 0.05 and env.friction.min() >= 0.4 and env.friction.max() <= 1.2
    mass = sim.get_params("body_mass", [env.trunk])[:, 0]
    assert torch.allclose(mass, env.trunk_mass + env.payload[:, 0], atol=1e-4)
    kp = sim.get_params("actuator_kp", list(range(NJ)))
    kv = sim.get_params("actuator_kv", list(range(NJ)))
    limit = sim.get_params("actuator_forcerange", list(range(NJ)))
    assert torch.allclose(kp, (40.0 * env.motor_strength * env.gain_scale[:, :1]).expand(6, NJ), atol=1e-4)
    assert torch.allclose(kv, (1.0 * env.motor_strength * env.gain_scale[:, 1:]).expand(6, NJ), atol=1e-4)
    assert torch.allclose(limit[:, 2], 35.55 * env.motor_strength[:, 0], atol=1e-4)
    assert set(env.latency.tolist()) <= {0, 1, 2, 3} and len(set(env.latency.tolist())) > 1
    # the critic reports them
    terms = {t.name: t.dim for t in env.spec.obs_terms["critic"]}
    start = list(terms).index("friction")
    offset = sum(list(terms.values())[:start])
    critic = env._observe()["critic"]
    assert torch.allclose(critic[:, offset], env.friction[:, 0]) and torch.allclose(critic[:, offset + 1],
                                                                                     env.payload[:, 0])


def test_action_latency_applies_the_action_of_n_steps_ago():
    env = make(n=3, latency_steps=2, **{k: v for k, v in CALM.items() if k != "latency_steps"})
    env.reset()
    env.latency[:] = torch.tensor([0, 1, 2])
    actions = [torch.full((3, NJ), v) for v in (0.2, -0.4, 0.6)]
    for a in actions:
        env.step(a)
    default, scale = torch.tensor(DEFAULT_POSE), env.cfg.action_scale
    for i, lag in enumerate((0, 1, 2)):
        want = (default + scale * actions[2 - lag][i]).clamp(env.joint_low, env.joint_high)
        assert torch.allclose(env.sim.ctrl[i], want, atol=1e-5)


def test_nonfinite_state_resets_that_env_and_is_counted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its instability warning to MUJOCO_LOG.TXT in the working directory
    env = make(n=4, **CALM)
    env.reset()
    for _ in range(3):
        env.step(torch.zeros(4, NJ))
    env.sim.batch.bind("qvel")[2, :] = float("nan")  # a diverged simulation
    res = env.step(torch.zeros(4, NJ))
    assert res.terminated.tolist() == [False, False, True, False]
    assert res.info["log"]["episode/nonfinite_resets"] == 1.0 and env.nonfinite_resets == 1
    assert torch.isfinite(res.reward).all() and torch.isfinite(res.obs["critic"]).all()
    assert torch.isfinite(res.info["final_obs"]["critic"]).all()
    assert env.episode_length[2] == 0 and (env.episode_length[[0, 1, 3]] == 4).all()
    res = env.step(torch.zeros(4, NJ))  # the batch goes on
    assert not res.terminated.any() and torch.isfinite(res.obs["policy"]).all()


def test_hind_legs_task_rewards_rearing():
    env = make("quadruped-hind-legs", n=2, **CALM)
    env.reset()
    terms = env._task_terms()
    assert terms["upright"].max() < 0.05  # on four legs: trunk x axis horizontal
    # rear env 1 up: pitch the trunk nose-up by 80° around the hind feet
    q = env.sim.qpos.clone()
    pitch = math.radians(-80.0)
    q[1, 3:7] = torch.tensor([math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0])
    q[1, 2] = 0.5
    env.sim.reset_idx(torch.tensor([1]), q[1:2], torch.zeros(1, env.model.nv))
    terms = env._task_terms()
    assert terms["upright"][1] > 0.95 and terms["height"][1] > 0.9 and terms["front_feet_air"][1] == 1.0
    assert not env._failed()[1]  # pitching up is the task, not a fall


def test_hind_legs_reared_starts_stand_on_the_hind_feet_and_the_reared_metric_counts_them():
    """`init_reared_fraction` starts robots on their hind legs: pitched as drawn, both hind feet on the ground,
    front feet in the air, nothing penetrating; the `reared` metric counts the steps spent so."""
    env = make("quadruped-hind-legs", n=8, init_reared_fraction=0.5, init_reared_pitch_deg=(75.0, 85.0),
               action_scale=1.6, **CALM)
    env.reset()
    rot = quat_to_rotmat(env.base_quat)
    pitch = torch.rad2deg(torch.asin(rot[:, 2, 0]))
    reared = pitch > 45.0
    assert 0 < int(reared.sum()) < 8  # about half, seeded
    assert ((pitch[reared] > 74.9) & (pitch[reared] < 85.1)).all() and (pitch[~reared].abs() < 1.0).all()
    hind_feet = torch.stack([torch.from_numpy(env.sim.data(i).site_xpos[env.foot_sites[2:], 2]) for i in range(8)])
    radius = float(env.model.geom_size[env.foot_geoms[2], 0])
    assert ((hind_feet[reared] - radius).min(-1).values.abs() < 0.01).all()  # the lower hind foot on the ground
    assert (env.base_pos[reared, 2] > 0.45).all()
    # hold the reared joint targets for a few steps: hind feet carry the robot, front feet stay up
    scale = env.cfg.action_scale
    for _ in range(3):
        target = env._reared_joints(torch.asin(quat_to_rotmat(env.base_quat)[:, 2, 0]))
        res = env.step(((target - env.default_pose) / scale).clamp(-1, 1))
        assert not res.terminated[reared].any()
    assert env.foot_contact[reared][:, 2:].any(-1).all() and not env.foot_contact[reared][:, :2].any()
    assert (env.reared_steps[reared] == 3).all() and (env.reared_steps[~reared] == 0).all()
    metrics = env._task_metrics(torch.arange(8))
    assert torch.allclose(metrics["reared"], reared.float())
    with pytest.raises(ConfigError, match="init_reared_fraction"):
        make("quadruped-hind-legs", n=2, init_reared_fraction=1.5)
    with pytest.raises(ConfigError, match="init_reared_pitch_deg"):
        make("quadruped-hind-legs", n=2, init_reared_pitch_deg=(80.0, 100.0))


@pytest.mark.slow
def test_mjwarp_agrees_with_mujoco_cpu_on_flat_ground():
    """25 policy steps of random actions on warp's CPU device: the first run compiles warp's kernels (minutes,
    cached in ~/.cache/warp). Measured: joint/base states agree within 3e-7, critic observations within 1e-5."""
    pytest.importorskip("mujoco_warp")
    envs = {b: make(n=2, backend=b, device="cpu", **CALM) for b in ("mujoco_cpu", "mjwarp")}
    for e in envs.values():
        e.reset()
    g = torch.Generator().manual_seed(0)
    wrench = torch.tensor([[20.0, 0, 0, 0, 0, 1.0], [0, -20.0, 0, 0.5, 0, 0]])
    for e in envs.values():
        e.set_disturbance(wrench)
    for _ in range(25):
        a = torch.rand(2, NJ, generator=g) * 2 - 1
        res = {b: e.step(a) for b, e in envs.items()}
    cpu, warp = envs["mujoco_cpu"], envs["mjwarp"]
    assert (cpu.sim.qpos - warp.sim.qpos).abs().max() < 1e-4
    assert (res["mujoco_cpu"].obs["critic"] - res["mjwarp"].obs["critic"]).abs().max() < 1e-3


def test_the_legged_ros_adapter_rebuilds_the_policy_observation(tmp_path):
    """Export a (random) policy for quadruped-walk; the legged ROS adapter accepts the artifact and, fed the
    simulated robot's joint states and IMU, assembles the same policy observation the env gives the policy."""
    pytest.importorskip("rclpy")
    import json

    import numpy as np
    from robolearn_ros.adapters import LeggedAdapter
    from sensor_msgs.msg import Imu, JointState

    from robolearn.envs.quadruped.env import JOINTS
    from robolearn.export import export_policy
    from robolearn.networks.mlp import MLPPolicy

    env = make(n=1, **CALM)
    env.reset()
    for _ in range(3):
        env.step(torch.full((1, NJ), 0.3))
    spec = env.spec
    policy = MLPPolicy(spec.obs_dims["policy"], spec.action.dim, [8])
    art = export_policy(policy, spec, tmp_path / "artifact", source={"test": True}, targets=())
    manifest = json.loads((art / "manifest.json").read_text())
    ad = LeggedAdapter(manifest, {"joints": list(JOINTS), "default_joint_pos": list(DEFAULT_POSE)},
                       {"joint_command"})
    ad.record(np.full(NJ, 0.3))  # the last action sent
    q, w = env.base_quat[0].tolist(), env.base_ang_vel[0].tolist()
    imu = Imu()
    imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z = q
    imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = w
    js = JointState(name=list(JOINTS), position=env.joint_pos[0].tolist(), velocity=env.joint_vel[0].tolist())
    from geometry_msgs.msg import Twist

    cmd = Twist()
    cmd.linear.x, cmd.linear.y, cmd.angular.z = env.commands[0].tolist()
    obs = ad.observation({"joint_states": js, "imu": imu, "cmd_vel": cmd})
    np.testing.assert_allclose(obs, env._observe()["policy"][0].numpy(), atol=1e-5)
