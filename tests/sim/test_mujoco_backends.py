"""The MuJoCo backends: state exchange, per-env randomization, bad input, and CPU/MuJoCo-Warp agreement."""

import dataclasses

import pytest
import torch

from robolearn.core.errors import ConfigError, MissingExtraError, RobolearnError
from robolearn.envs import registry
from robolearn.envs.manipulation.arm import ARM_JOINTS, ASSETS, HOME
from robolearn.sim.backend import import_mujoco, load_model, make_backend

try:  # before anything imports mujoco: EGL offscreen rendering on a machine without a display
    import_mujoco()
except MissingExtraError as e:
    pytest.skip(str(e), allow_module_level=True)


def lift_backend(n=3, name="mujoco_cpu"):
    model = load_model(ASSETS / "scene_lift.xml", "test")
    return model, make_backend(name, model, n, "cpu", "test")


def test_cpu_backend_resets_steps_and_exposes_tensors():
    model, sim = lift_backend()
    assert sim.qpos.shape == (3, model.nq) and sim.qvel.shape == (3, model.nv) and sim.ctrl.shape == (3, model.nu)
    assert sim.site_xpos.shape == (3, model.nsite, 3) and sim.site_xmat.shape == (3, model.nsite, 3, 3)
    assert sim.xanchor.shape == sim.xaxis.shape == (3, model.njnt, 3)
    qpos = torch.tensor(model.qpos0, dtype=torch.float32).repeat(2, 1)
    qpos[:, :ARM_JOINTS] = torch.tensor(HOME)
    qpos[1, 0] = 0.3
    sim.reset_idx(torch.tensor([0, 2]), qpos, torch.zeros(2, model.nv))
    assert torch.allclose(sim.qpos[2, :ARM_JOINTS], qpos[1, :ARM_JOINTS])
    ctrl = torch.cat((qpos[[0, 0, 1], :ARM_JOINTS], torch.full((3, 1), 0.04)), -1)
    before = sim.qpos.clone()
    sim.step(ctrl, 5)
    assert torch.isfinite(sim.qpos).all() and torch.isfinite(sim.sensordata).all()
    assert (sim.qpos[:, :ARM_JOINTS] - before[:, :ARM_JOINTS]).abs().max() < 0.05  # holds its commanded pose
    state = sim.get_state()
    sim.step(ctrl, 5)
    after = sim.qpos.clone()
    sim.set_state(state)
    sim.step(ctrl, 5)
    assert torch.equal(sim.qpos, after)  # exact resume


def test_randomization_changes_exactly_what_it_claims():
    model, sim = lift_backend()
    ids = torch.tensor([1])
    values = sim.set_params(ids, "body_mass", [3, 4], torch.tensor([[2.0, 0.5]]))
    expected = torch.tensor([[2 * model.body_mass[3], 0.5 * model.body_mass[4]]], dtype=torch.float32)
    assert torch.allclose(values, expected)
    inertia = sim.batch.expanded("body_inertia")
    assert inertia[1, 3] == pytest.approx(2 * model.body_inertia[3])
    assert inertia[0, 3] == pytest.approx(model.body_inertia[3])
    mass = sim.get_params("body_mass", [3])
    assert mass[0, 0] == pytest.approx(model.body_mass[3]) and mass[2, 0] == pytest.approx(model.body_mass[3])
    sim.set_params(ids, "geom_friction", [0], torch.tensor([[0.5]]))
    assert sim.get_params("geom_friction", [0])[:, 0].tolist() == pytest.approx([1.0, 0.5, 1.0])
    sim.set_params(ids, "dof_damping", [2], torch.tensor([[1.5]]))
    assert sim.get_params("dof_damping", [2])[1, 0] == pytest.approx(1.5 * model.dof_damping[2])
    # a softer servo on joint 1 of env 1 lags behind the same command
    sim.set_params(ids, "actuator_kp", [0], torch.tensor([[0.25]]))
    assert sim.batch.expanded("actuator_biasprm")[1, 0, 1] == pytest.approx(-0.25 * model.actuator_gainprm[0, 0])
    qpos = torch.tensor(model.qpos0, dtype=torch.float32).repeat(3, 1)
    qpos[:, :ARM_JOINTS] = torch.tensor(HOME)
    sim.reset_idx(torch.arange(3), qpos, torch.zeros(3, model.nv))
    ctrl = torch.cat((qpos[:, :ARM_JOINTS], torch.full((3, 1), 0.04)), -1)
    ctrl[:, 0] += 0.2
    sim.step(ctrl, 10)
    moved = sim.qpos[:, 0]
    assert moved[1] < 0.8 * moved[0] and moved[0] == pytest.approx(float(moved[2]), abs=1e-6)
    with pytest.raises(ConfigError, match="cannot randomize 'geom_rgba'"):
        sim.set_params(ids, "geom_rgba", [0], torch.ones(1, 1))


def test_task_critic_reports_the_randomized_parameters():
    cfg = dataclasses.replace(registry.cfg_class("arm-lift")(), num_envs=4)
    env = registry.make("arm-lift", cfg, seed=0)
    obs = env.reset()
    sim, m = env.sim, env.model
    kp = sim.get_params("actuator_kp", list(range(ARM_JOINTS))) / torch.tensor(m.actuator_gainprm[:ARM_JOINTS, 0])
    assert torch.allclose(kp.float(), env.rand_scale["kp"], atol=1e-5)
    assert kp.std(0).min() > 0  # differs between envs
    lo, hi = cfg.randomize["kp"]
    assert ((kp >= lo) & (kp <= hi)).all()
    params = obs["critic"][:, -env.num_rand_params():]
    assert torch.allclose(params[:, -ARM_JOINTS:], env.rand_scale["kp"])
    mass = sim.get_params("body_mass", [env.cube_body]).squeeze(-1)
    assert torch.allclose(mass, env.object_params[:, 0], atol=1e-6)
    assert ((mass >= cfg.object_mass[0]) & (mass <= cfg.object_mass[1])).all()
    # the cube's size is per env: its collision geometry, its resting height and the critic's object_params
    half = sim.get_params("geom_size", [env.cube_geom]).squeeze(-1)
    assert torch.allclose(half, env.object_params[:, 2], atol=1e-6) and half.std() > 0
    assert torch.allclose(env.cube_pos[:, 2], half, atol=2e-3)
    sl = {t.name: t for t in env.spec.obs_terms["policy"]}
    assert "object_half_size" in sl
    # a new episode draws new values
    env._reset_idx(torch.arange(4))
    assert not torch.allclose(sim.get_params("body_mass", [env.cube_body]).squeeze(-1), mass)


def test_bad_model_files_and_backends_are_one_line_errors(tmp_path):
    with pytest.raises(RobolearnError, match="arm-lift: MJCF file not found: .*nope.xml"):
        load_model(tmp_path / "nope.xml", "arm-lift")
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><body><geom type='box'/></worldbody></mujoco>")
    with pytest.raises(RobolearnError, match="arm-lift: malformed MJCF .*bad.xml") as err:
        load_model(bad, "arm-lift")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="arm-lift: unknown backend 'bullet'"):
        registry.make("arm-lift", num_envs=1, backend="bullet")


def test_mjwarp_on_cuda_without_cuda_is_a_clear_error_unless_fallback_is_allowed():
    pytest.importorskip("mujoco_warp")
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RobolearnError, match="arm-reach: backend 'mjwarp' on device 'cuda'.*fallback_to_cpu"):
        registry.make("arm-reach", num_envs=1, backend="mjwarp", device="cuda")
    with pytest.warns(UserWarning, match="falls back to warp's CPU device"):
        env = registry.make("arm-reach", num_envs=1, backend="mjwarp", device="cuda", fallback_to_cpu=True)
    assert env.device.type == "cpu" and env.sim.name == "mjwarp"
    env.reset()
    assert torch.isfinite(env.step(torch.zeros(1, env.spec.action.dim)).obs["critic"]).all()


def test_mjwarp_agrees_with_mujoco_cpu():
    """40 policy steps (0.8 s) of the lift expert approaching the cube (cube resting on the table, contacts on):
    joint positions agree within 1e-4 rad and the critic observation within 1e-3 (float32 warp vs float64 C)."""
    pytest.importorskip("mujoco_warp")
    envs = {b: registry.make("arm-lift", num_envs=2, seed=0, backend=b, device="cpu") for b in ("mujoco_cpu", "mjwarp")}
    obs = {b: e.reset() for b, e in envs.items()}
    cpu, warp = envs["mujoco_cpu"], envs["mjwarp"]
    assert torch.allclose(cpu.sim.get_params("body_mass", [3]), warp.sim.get_params("body_mass", [3]))
    for _ in range(40):
        a = cpu.expert_action(obs["mujoco_cpu"])
        obs = {b: e.step(a).obs for b, e in envs.items()}
    assert (cpu.sim.qpos - warp.sim.qpos).abs().max() < 1e-4
    assert (obs["mujoco_cpu"]["critic"] - obs["mjwarp"]["critic"]).abs().max() < 1e-3
    assert (cpu.ee_pos - warp.ee_pos).norm(dim=-1).max() < 1e-4


def test_mjwarp_host_copy_of_one_env_matches_mujoco_cpu():
    """`data(env)`, the host MjData that videos draw: after the same reset and 10 expert steps, each env's joint
    positions, cube pose and its own cube size (env 0's randomized at reset, env 1's set to 1.5 × nominal) agree
    between the backends (float32 warp vs float64 C)."""
    pytest.importorskip("mujoco_warp")
    import numpy as np

    envs = {b: registry.make("arm-lift", num_envs=2, seed=0, backend=b, device="cpu") for b in ("mujoco_cpu", "mjwarp")}
    obs = {b: e.reset() for b, e in envs.items()}
    cpu, warp = envs["mujoco_cpu"], envs["mjwarp"]
    for _ in range(10):
        a = cpu.expert_action(obs["mujoco_cpu"])
        obs = {b: e.step(a).obs for b, e in envs.items()}
    for e in envs.values():  # env 1's cube: 1.5 × the nominal size
        e.sim.set_params(torch.tensor([1]), "geom_size", [e.cube_geom], torch.tensor([[1.5]]))
    sizes = []
    for k in range(2):
        ref = cpu.sim.data(k)
        qpos, cube_pos, time = ref.qpos.copy(), ref.xpos[cpu.cube_body].copy(), ref.time
        size = cpu.sim.render_model.geom_size[cpu.cube_geom].copy()
        d = warp.sim.data(k)
        assert np.abs(d.qpos - qpos).max() < 1e-4
        assert np.abs(d.xpos[warp.cube_body] - cube_pos).max() < 1e-4
        assert np.allclose(warp.sim.render_model.geom_size[warp.cube_geom], size, rtol=1e-6)
        assert d.time == pytest.approx(time, abs=1e-5)
        sizes.append(size[0])
    nominal = cpu.model.geom_size[cpu.cube_geom, 0]
    assert sizes[1] == pytest.approx(1.5 * nominal, rel=1e-6) and sizes[0] != pytest.approx(nominal)
    with pytest.raises(RobolearnError, match="arm-lift: env 2 out of range"):
        warp.sim.data(2)


MOCAP_XML = """<mujoco><option timestep="0.01"/><worldbody>
  <body name="target" mocap="true" pos="0.3 0 0.2"><geom type="sphere" size="0.02" contype="0" conaffinity="0"/></body>
  <body name="link" pos="0 0 0.5"><joint name="hinge" type="hinge" axis="0 1 0"/>
    <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02"/></body>
</worldbody><actuator><general joint="hinge" dyntype="filter" dynprm="0.05" gainprm="2"/></actuator></mujoco>"""
"""A mocap body and an actuator with activation state (a first-order filter): what `data(env)` copies beyond qpos."""


def test_mjwarp_host_copy_carries_activations_and_mocap_poses():
    pytest.importorskip("mujoco_warp")
    import numpy as np

    mujoco = import_mujoco()
    model = mujoco.MjModel.from_xml_string(MOCAP_XML)
    sims = {b: make_backend(b, model, 2, "cpu", "mocap") for b in ("mujoco_cpu", "mjwarp")}
    for _ in range(10):
        for sim in sims.values():
            sim.step(torch.tensor([[1.0], [-1.0]]), 2)
    warp = sims["mjwarp"]
    warp._view("mocap_pos")[1] = torch.tensor([0.1, 0.2, 0.3])  # world 1's target moved on the device
    for k in range(2):
        ref = sims["mujoco_cpu"].data(k)
        qpos, act, link = ref.qpos.copy(), ref.act.copy(), ref.xpos[2].copy()
        d = warp.data(k)
        assert abs(act[0]) > 0.1 and np.abs(d.act - act).max() < 1e-5  # the filter's state, ±ctrl building up
        assert np.abs(d.qpos - qpos).max() < 1e-4 and np.abs(d.xpos[2] - link).max() < 1e-4
    assert np.allclose(warp.data(0).xpos[1], [0.3, 0.0, 0.2]) and np.allclose(warp.data(1).xpos[1], [0.1, 0.2, 0.3])
