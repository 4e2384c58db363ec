"""The ALOHA-class bimanual tasks: scripted experts, action modes, cameras, randomization, resume, bad input."""

import pytest
import torch

from robolearn.core.env import NonFiniteActionError
from robolearn.core.errors import ConfigError, MissingExtraError, RobolearnError
from robolearn.envs import registry
from robolearn.eval.rollout import evaluate_policy
from robolearn.sim.backend import import_mujoco

try:  # before anything imports mujoco: EGL offscreen rendering on a machine without a display
    import_mujoco()
except MissingExtraError as e:
    pytest.skip(str(e), allow_module_level=True)

TASKS = ["bimanual-transfer-cube", "bimanual-insertion"]


@pytest.mark.parametrize("task", TASKS)
def test_expert_solves_the_task(task):
    """ACT-style waypoint expert through IK: every episode reaches ACT's last stage (4) and nothing falls off."""
    env = registry.make(task, num_envs=6, seed=21)
    m = evaluate_policy(env, env.expert_action)
    assert m["success"] >= 5 / 6 and m["failure"] == 0.0
    assert m["max_stage"] >= 3.5
    if task == "bimanual-insertion":
        assert m["final_depth"] > env.cfg.insert_depth


def test_holding_still_succeeds_at_nothing():
    env = registry.make("bimanual-transfer-cube", num_envs=4, seed=1, episode_length_s=0.5)
    obs = env.reset()
    hold = env.action.clone()  # joint targets of the start pose, grippers open
    m = evaluate_policy(env, lambda o: hold)
    assert m["success"] == 0.0 and m["max_stage"] == 0.0
    assert torch.isfinite(obs["critic"]).all()


@pytest.mark.parametrize("task", TASKS)
def test_object_state_adds_the_exact_object_poses_to_the_policy_state(task):
    env = registry.make(task, num_envs=2, seed=3, object_state=True)
    obs = env.reset()
    n = len(env.objects)
    assert env.spec.obs_dims["policy"] == 28 + 7 * n and obs["policy"].shape == (2, 28 + 7 * n)
    names = [t.name for t in env.spec.obs_terms["policy"]][-2 * n:]
    assert names == [f"{o}_{k}" for o in env.objects for k in ("pos", "quat")]
    for i in range(n):  # the same values as the critic's exact poses (which follow the 28 joint states)
        critic = obs["critic"][:, 28 + 13 * i:28 + 13 * i + 7]
        torch.testing.assert_close(obs["policy"][:, 28 + 7 * i:35 + 7 * i], critic)
    plain = registry.make(task, num_envs=2, seed=3)
    assert plain.spec.obs_dims == {"policy": 28, "critic": env.spec.obs_dims["critic"]}


def test_joint_pos_actions_are_absolute_joint_targets_and_normalized_grippers():
    env = registry.make("bimanual-transfer-cube", num_envs=2, seed=0, randomize={})
    env.reset()
    target = env.home.clone().repeat(2, 1)
    target[:, 1] += 0.2  # left shoulder forward
    target[:, 8] -= 0.2  # right elbow up
    action = env.joints_to_action(target, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    for _ in range(40):
        env.step(action)
    assert (env.joint_pos - target).abs().max() < 0.02
    g = env.gripper
    assert g[:, 0].max() < 0.05 and g[:, 1].min() > 0.95  # left closed, right open
    terms = {t.name: t for t in env.spec.action.terms}  # the spec's scaling (no simulator) is the model's range
    low = torch.tensor(terms["left_joint_pos"].offset) - torch.tensor(terms["left_joint_pos"].scale)
    high = torch.tensor(terms["right_joint_pos"].offset) + torch.tensor(terms["right_joint_pos"].scale)
    assert torch.allclose(low, env.joint_low[:6], atol=1e-4) and torch.allclose(high, env.joint_high[6:], atol=1e-4)
    obs = env._observe()
    sl = {t.name: t for t in env.spec.obs_terms["policy"]}
    assert list(sl)[:4] == ["left_joint_pos", "left_gripper", "right_joint_pos", "right_gripper"]
    assert torch.allclose(obs["policy"][:, 6], g[:, 0], atol=0.02)  # ACT's qpos[6]: left gripper, normalized


def test_ee_delta_moves_each_tcp_where_it_is_told():
    env = registry.make("bimanual-transfer-cube", num_envs=1, seed=0, action_mode="ee_delta", randomize={})
    env.reset()
    start = env.tcp_pos.clone()
    a = torch.zeros(1, 14)
    a[0, 2] = 0.5  # left TCP up 1.5 cm per step
    a[0, 7] = 0.5  # right TCP 1.5 cm per step along world +x (back towards its base)
    a[0, 6] = a[0, 13] = 1.0  # grippers open
    for _ in range(4):
        env.step(a)
    a[0, 2] = a[0, 7] = 0.0
    for _ in range(4):  # the servos catch up with the goal the deltas moved (no drift from their lag)
        env.step(a)
    moved = env.tcp_pos - start
    assert abs(moved[0, 0, 2] - 0.06) < 0.005 and moved[0, 0, :2].abs().max() < 0.003
    assert abs(moved[0, 1, 0] - 0.06) < 0.005 and moved[0, 1, 1:].abs().max() < 0.003
    with pytest.raises(ConfigError, match="set action_mode: joint_pos"):
        env.expert_action(env._observe())


def test_cameras_have_the_declared_shapes_and_show_the_scene():
    try:
        env = registry.make("bimanual-transfer-cube", num_envs=2, seed=0, cameras=("top", "left_wrist", "right_wrist"),
                            depth=True, image_size=(96, 128))
    except RobolearnError as e:  # pragma: no cover - machines without EGL/OSMesa
        if "offscreen renderer" in str(e):
            pytest.skip(str(e))
        raise
    policy = env.reset()["policy"]
    assert set(policy) == {"state"} | set(env.image_shapes())
    assert policy["state"].shape == (2, env.spec.obs_dims["policy"])
    for name, shape in env.image_shapes().items():
        assert policy[name].shape == (2, *shape)
    for cam in ("top", "left_wrist", "right_wrist"):
        rgb, depth = policy[f"rgb_{cam}"], policy[f"depth_{cam}"]
        assert rgb.dtype == torch.uint8 and rgb.float().std() > 10  # not blank
        assert torch.isfinite(depth).all() and (depth > 0).all()
    top = policy["rgb_top"].float()
    assert (top[0] - top[1]).abs().mean() > 0.05  # the cube starts elsewhere in each env
    red = top[..., 0] - top[..., 1:].amax(-1) > 60
    assert red.flatten(1).sum(-1).min() > 10  # the red cube is in the top view of both envs
    assert 0.05 < float(policy["depth_top"].min()) and float(policy["depth_top"].median()) < 1.5
    assert env.render().shape == (2, 96, 128, 3)  # what `robolearn collect` records


def test_randomization_changes_what_it_claims():
    env = registry.make("bimanual-insertion", num_envs=4, seed=5)
    obs = env.reset()
    nominal_mass = torch.tensor(env.model.body_mass[env.obj_body], dtype=torch.float32)
    mass = env.sim.get_params("body_mass", env.obj_body)
    assert torch.allclose(mass, nominal_mass * env.object_params[:, :2], rtol=1e-4)
    assert env.object_params[:, :2].std(0).min() > 0  # differs between envs
    kp = env.sim.get_params("actuator_kp", env.arm_actuators)
    assert torch.allclose(kp, 800 * env.rand_scale["kp"], rtol=1e-4)
    pads = env.sim.get_params("geom_friction", env.pad_geoms)
    assert torch.allclose(pads, 1.5 * env.rand_scale["friction"], rtol=1e-4)
    lo, hi = env.cfg.randomize["damping"]
    assert ((env.rand_scale["damping"] >= lo) & (env.rand_scale["damping"] <= hi)).all()
    # the critic reports them, in order, at the end
    params = obs["critic"][:, -(1 + 36 + 4):]
    assert torch.allclose(params[:, 0], env.rand_scale["friction"][:, 0])
    assert torch.allclose(params[:, -4:], env.object_params)
    # object start poses fall in their configured ranges and differ between envs
    peg, socket = env.object_init[:, 0, :3], env.object_init[:, 1, :3]
    assert ((peg[:, 0] >= 0.1) & (peg[:, 0] <= 0.2) & (socket[:, 0] >= -0.2) & (socket[:, 0] <= -0.1)).all()
    assert peg[:, 1].std() > 0.01
    assert torch.allclose(env.object_pos(0), peg, atol=1e-3)
    # switched off: everything nominal
    flat = registry.make("bimanual-insertion", num_envs=2, seed=5, randomize={}, object_mass=(1.0, 1.0),
                         object_friction=(1.0, 1.0))
    flat.reset()
    assert torch.allclose(flat.sim.get_params("body_mass", flat.obj_body), nominal_mass.expand(2, -1))
    assert torch.allclose(flat.sim.get_params("actuator_kp", flat.arm_actuators), torch.full((2, 12), 800.0))


def test_state_dict_resumes_exactly():
    env = registry.make("bimanual-transfer-cube", num_envs=2, seed=3)
    obs = env.reset()
    for _ in range(100):  # the right gripper on the cube
        obs = env.step(env.expert_action(obs)).obs
    state = env.state_dict()
    actions = []
    for _ in range(5):
        actions.append(env.expert_action(obs))
        obs = env.step(actions[-1]).obs
    after = obs["critic"].clone()
    env.load_state_dict(state)
    for a in actions:
        obs = env.step(a).obs
    assert torch.equal(obs["critic"], after)


def test_expert_demos_are_collected_with_the_top_camera_and_replay_exactly(tmp_path, capsys):
    from robolearn.cli.main import main
    from robolearn.data import EpisodeStore

    out = tmp_path / "demo.zarr"
    assert main(["collect", "--task", "bimanual-insertion", "--device", "expert", "--out", str(out), "--episodes", "1",
                 "--episode-length", "0.6", "--image-size", "48", "64"]) == 0
    store = EpisodeStore(out)
    ep = store.read_episode(0)
    assert ep["action"].shape == (30, 14) and ep["observation.policy"].shape == (30, 28)
    assert ep["observation.images.camera"].shape == (30, 48, 64, 3) and ep["observation.images.camera"].std() > 10
    capsys.readouterr()
    assert main(["replay", str(out), "--json"]) == 0
    assert '"diverged": []' in capsys.readouterr().out


def test_bad_input_is_one_clear_line():
    env = registry.make("bimanual-transfer-cube", num_envs=2)
    env.reset()
    with pytest.raises(RobolearnError, match=r"bimanual-transfer-cube: action shape \(2, 7\), expected \(2, 14\)"):
        env.step(torch.zeros(2, 7))
    a = torch.zeros(2, 14)
    a[1, 3] = float("nan")
    with pytest.raises(NonFiniteActionError, match=r"bimanual-transfer-cube: non-finite actions from env ids \[1\]"):
        env.step(a)
    with pytest.raises(ConfigError, match="bimanual-insertion: unknown camera 'front'"):
        registry.make("bimanual-insertion", num_envs=1, cameras=("front",))
    with pytest.raises(ConfigError, match="bimanual-insertion: unknown action_mode 'torque'"):
        registry.make("bimanual-insertion", num_envs=1, action_mode="torque")


@pytest.mark.slow
def test_mjwarp_agrees_with_mujoco_cpu():
    """40 policy steps of the transfer expert on both backends (warp on its CPU device): joint positions within
    1e-4 rad, the critic observation within 1e-3 (float32 warp vs float64 C)."""
    pytest.importorskip("mujoco_warp")
    envs = {b: registry.make("bimanual-transfer-cube", num_envs=2, seed=0, backend=b) for b in ("mujoco_cpu", "mjwarp")}
    obs = {b: e.reset() for b, e in envs.items()}
    cpu, warp = envs["mujoco_cpu"], envs["mjwarp"]
    for _ in range(40):
        a = cpu.expert_action(obs["mujoco_cpu"])
        obs = {b: e.step(a).obs for b, e in envs.items()}
    assert (cpu.sim.qpos - warp.sim.qpos).abs().max() < 1e-4
    assert (obs["mujoco_cpu"]["critic"] - obs["mjwarp"]["critic"]).abs().max() < 1e-3
