"""push-t: coverage against an exact polygon intersection, the frame mapping, the expert, the camera, bad input."""

import math

import pytest
import torch

from robolearn.core.env import NonFiniteActionError
from robolearn.core.errors import ConfigError, MissingExtraError, RobolearnError
from robolearn.envs import registry
from robolearn.envs.manipulation.pusht import (
    BAR,
    GOAL_POSE,
    STEM,
    coverage,
    px_to_world,
    world_to_px,
)
from robolearn.eval.rollout import evaluate_policy
from robolearn.sim.backend import import_mujoco

try:  # before anything imports mujoco: EGL offscreen rendering on a machine without a display
    import_mujoco()
except MissingExtraError as e:
    pytest.skip(str(e), allow_module_level=True)



@pytest.fixture(autouse=True)
def one_torch_thread():
    """The per-step tensors are small: a second torch thread only competes with MuJoCo's (and other jobs')."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


COVERAGE_TOLERANCE = 1e-5
"""Stated accuracy of `coverage` against shapely's polygon intersection (fraction of the goal's area)."""


def tee_polygon(pose):
    """The T at a reference pose (x, y, angle) as a shapely MultiPolygon (metres)."""
    geometry = pytest.importorskip("shapely.geometry")
    affinity = pytest.importorskip("shapely.affinity")
    parts = [geometry.box(cx - hx, cy - hy, cx + hx, cy + hy) for cx, cy, hx, hy in (BAR, STEM)]
    tee = geometry.MultiPolygon(parts)
    tee = affinity.rotate(tee, float(pose[2]), origin=(0.0, 0.0), use_radians=True)
    return affinity.translate(tee, float(pose[0]), float(pose[1]))


def exact_coverage(pose) -> float:
    goal = tee_polygon(GOAL_POSE)
    return tee_polygon(pose).intersection(goal).area / goal.area


def test_coverage_is_one_at_the_goal_and_zero_far_away():
    goal = torch.tensor([GOAL_POSE])
    assert coverage(goal).item() == pytest.approx(1.0, abs=COVERAGE_TOLERANCE)
    assert coverage(goal + torch.tensor([0.0, 0.0, 2 * math.pi])).item() == pytest.approx(1.0, abs=COVERAGE_TOLERANCE)
    assert coverage(goal.double()).item() == pytest.approx(1.0, abs=1e-8)
    assert coverage(torch.tensor([[0.2, 0.2, 0.3]])).item() == 0.0
    # touching from outside (the bar's top edge against the goal's, turned over): no area, none counted
    flipped = goal + torch.tensor([0.0, 0.0, math.pi])
    assert coverage(flipped).item() == pytest.approx(exact_coverage(flipped[0].tolist()), abs=1e-6)


def test_coverage_matches_the_exact_polygon_intersection():
    """Random poses around the goal, copies shifted but aligned with it (shared edge directions: the degenerate
    case, and the usual one near success), uniformly random poses: equal to shapely within 1e-5."""
    g = torch.Generator().manual_seed(0)
    goal = torch.tensor(GOAL_POSE)
    near = goal + (torch.rand(150, 3, generator=g) * 2 - 1) * torch.tensor([0.02, 0.02, 0.4])
    aligned = goal + torch.cat(((torch.rand(50, 2, generator=g) * 2 - 1) * 0.01, torch.zeros(50, 1)), -1)
    quarter = goal + torch.tensor([[0.0, 0.0, k * math.pi / 2] for k in range(4)])  # edges parallel or crossed
    anywhere = (torch.rand(50, 3, generator=g) * 2 - 1) * torch.tensor([0.15, 0.15, math.pi])
    poses = torch.cat((near, aligned, quarter, anywhere))
    ours = coverage(poses)
    exact = torch.tensor([exact_coverage(p.tolist()) for p in poses])
    assert (exact > 0.85).sum() > 10 and (exact < 0.2).sum() > 20  # the poses do cover the range
    err = (ours - exact).abs()
    assert err.max() < COVERAGE_TOLERANCE, f"max error {err.max():.2e}"


def test_pixel_and_world_frames_round_trip():
    px = torch.tensor([[256.0, 256.0, 256.0, 256.0, math.pi / 4], [0.0, 512.0, 100.0, 50.0, 0.3]])
    world = px_to_world(px)
    assert world[0].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0, -math.pi / 4])
    assert world[1, :2].tolist() == pytest.approx([-0.256, -0.256])  # px y grows downwards, world y upwards
    assert torch.allclose(world_to_px(world).float(), px, atol=1e-4)


def test_goal_state_is_a_success_and_reward_follows_coverage():
    env = registry.make("push-t", num_envs=2, seed=0)
    env.reset()
    ids = torch.arange(2)
    # gym-pusht's _set_state semantics: reference point at angle 0, then turned about the centre of gravity;
    # so place the T at angle 0 such that after turning its reference point lands on the goal
    goal_ref = torch.tensor(GOAL_POSE)
    cog = env.block_pose_from_ref(goal_ref[None])[0]
    start_ref = cog[:2] - env.cog
    state = torch.tensor([[0.2, 0.2, *start_ref.tolist(), GOAL_POSE[2]], [0.2, 0.2, 0.1, 0.1, 0.0]])
    env.set_states(ids, state)
    assert torch.allclose(env.block_pose[0], goal_ref, atol=1e-5)
    res = env.step(torch.tensor([[0.8, 0.8], [0.8, 0.8]]))  # keep the pusher where it is, away from the block
    assert res.terminated.tolist() == [True, False]
    assert res.reward[0].item() == pytest.approx(1.0)
    assert 0.0 <= res.reward[1].item() < 1.0
    assert res.info["episode"]["success"].tolist() == [1.0]
    assert res.info["log"]["episode/coverage"] == pytest.approx(1.0, abs=COVERAGE_TOLERANCE)


def test_pushing_moves_the_block_and_the_block_stops_when_pushing_stops():
    """Quasi-static: the block moves only while pushed, and the pusher passes through the walls, the block not."""
    env = registry.make("push-t", num_envs=1, seed=0)
    env.reset()
    env.set_states(torch.tensor([0]), torch.tensor([[-0.15, -0.045, 0.0, 0.0, 0.0]]))  # left of the stem
    start = env.block_pose.clone()
    target_x = 0.2 * 0.256
    for _ in range(10):  # push right, along the line through the centre of gravity: a pure translation
        env.step(torch.tensor([[0.2, -0.045 / 0.256]]))
    moved = env.block_pose - start
    # the stem's left face (x = −15 mm) ends up one pusher radius right of the pusher's target
    assert moved[0, 0].item() == pytest.approx(target_x + 0.015 + 0.015, abs=0.002)
    assert abs(moved[0, 1]) < 0.002 and abs(moved[0, 2]) < 0.02
    held = env.block_pose.clone()
    for _ in range(5):
        env.step(torch.tensor([[-0.9, -0.9]]))  # the pusher leaves towards the bottom-left corner, clear of the T
    assert (env.block_pose - held).abs().max() < 2e-3
    # the block never leaves the walls' inside (inner faces at ±0.249 m, the pusher may)
    assert (env.block_pose[:, :2].abs() < 0.25).all()


@pytest.mark.parametrize("seed", [1, 2])
def test_expert_succeeds(seed):
    env = registry.make("push-t", num_envs=12, seed=seed)
    m = evaluate_policy(env, env.expert_action)
    assert m["success"] >= 11 / 12
    assert m["max_coverage"] > 0.9


def test_doing_nothing_does_not_succeed():
    env = registry.make("push-t", num_envs=8, seed=1, episode_length_s=3.0)
    obs = env.reset()
    m = evaluate_policy(env, lambda o: o["policy"][:, :2] / 0.256)  # hold the pusher where it is
    assert obs["policy"].shape == (8, 5)
    assert m["success"] == 0.0


def test_top_camera_image_has_the_declared_shape_and_shows_the_scene():
    try:
        env = registry.make("push-t", num_envs=2, seed=0, cameras=("top",))
        obs = env.reset()
    except RobolearnError as e:  # pragma: no cover - machines without EGL/OSMesa
        if "offscreen renderer" in str(e):
            pytest.skip(str(e))
        raise
    policy = obs["policy"]
    assert set(policy) == {"state", "rgb_top"}
    assert policy["state"].shape == (2, 2) and env.spec.obs_dims["policy"] == 2
    assert policy["rgb_top"].shape == (2, 96, 96, 3) and policy["rgb_top"].dtype == torch.uint8
    img = policy["rgb_top"].float()
    assert img.std() > 10  # not blank
    # the goal T (light green), the block (slate grey) and the pusher (royal blue) are all in view
    r, gr, b = img[..., 0], img[..., 1], img[..., 2]
    assert ((gr > 200) & (r < 180) & (b < 180)).any()
    assert ((b - r > 100) & (gr < 140)).any()
    assert not torch.equal(policy["rgb_top"][0], policy["rgb_top"][1])
    # the expert reads the state the image shows
    assert env.expert_action(obs).shape == (2, 2)


def test_bad_input_is_one_clear_error():
    env = registry.make("push-t", num_envs=2, seed=0)
    env.reset()
    with pytest.raises(NonFiniteActionError, match=r"push-t: non-finite actions from env ids \[1\]"):
        env.step(torch.tensor([[0.0, 0.0], [float("nan"), 0.0]]))
    with pytest.raises(RobolearnError, match=r"push-t: action shape \(2, 3\), expected \(2, 2\)"):
        env.step(torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="push-t: unknown camera 'wrist'"):
        registry.make("push-t", num_envs=1, cameras=("wrist",))
    with pytest.raises(ConfigError, match="push-t: unknown randomize keys"):
        registry.make("push-t", num_envs=1, randomize={"friction": (0.5, 1.5)})
    with pytest.raises(RobolearnError, match="push-t: backend 'mjwarp' on device 'cuda'"):
        if torch.cuda.is_available():  # pragma: no cover - only meaningful without CUDA
            raise RobolearnError("push-t: backend 'mjwarp' on device 'cuda' (skipped: CUDA present)")
        registry.make("push-t", num_envs=1, backend="mjwarp", device="cuda")


def test_randomization_reaches_the_critic_and_the_model():
    env = registry.make("push-t", num_envs=4, seed=0, randomize={"damping": (0.5, 2.0), "mass": (0.5, 2.0)})
    obs = env.reset()
    params = obs["critic"][:, -3:]
    assert ((params[:, :2] >= 0.5) & (params[:, :2] <= 2.0)).all() and (params[:, 2] == 1.0).all()
    assert params[:, 0].unique().numel() == 4
    damping = env.sim.get_params("dof_damping", env.block_q)
    assert torch.allclose(damping[:, 0], 300.0 * params[:, 0], rtol=1e-5)
    mass = env.sim.get_params("body_mass", [env.block_body])
    assert torch.allclose(mass[:, 0], params[:, 1], rtol=1e-5)


def test_mjwarp_agrees_with_mujoco_cpu():
    """20 policy steps (2 s) of the expert pushing the block (sphere–box contacts, both backends analytic):
    poses agree within 1e-4 (float32 warp vs float64 C; measured ~1e-6)."""
    pytest.importorskip("mujoco_warp")
    envs = {b: registry.make("push-t", num_envs=2, seed=0, backend=b, device="cpu") for b in ("mujoco_cpu", "mjwarp")}
    obs = {b: e.reset() for b, e in envs.items()}
    cpu, warp = envs["mujoco_cpu"], envs["mjwarp"]
    for _ in range(20):
        a = cpu.expert_action(obs["mujoco_cpu"])
        obs = {b: e.step(a).obs for b, e in envs.items()}
    assert cpu.coverage.max() > 0.0  # the expert did push something
    assert (cpu.sim.qpos - warp.sim.qpos).abs().max() < 1e-4
    assert (obs["mujoco_cpu"]["critic"] - obs["mjwarp"]["critic"]).abs().max() < 1e-3


def test_video_frames_on_mjwarp_match_mujoco_cpu():
    """`viz_state` records top-view frames on mjwarp too (MuJoCo's OpenGL from a host copy of each env): after the
    same reset and 5 expert steps they show the scene the mujoco_cpu frames show."""
    pytest.importorskip("mujoco_warp")
    envs = {b: registry.make("push-t", num_envs=3, seed=0, backend=b, device="cpu") for b in ("mujoco_cpu", "mjwarp")}
    obs = {b: e.reset() for b, e in envs.items()}
    first = envs["mjwarp"].viz_state(frames=2)["frame"].clone()
    for _ in range(5):
        a = envs["mujoco_cpu"].expert_action(obs["mujoco_cpu"])
        obs = {b: e.step(a).obs for b, e in envs.items()}
    frames = {b: e.viz_state(frames=2)["frame"].float() for b, e in envs.items()}
    assert frames["mjwarp"].shape == (2, 192, 192, 3) and frames["mjwarp"].std() > 10
    assert (frames["mjwarp"] - first.float()).abs().mean() > 0.3  # the pusher moved (measured 0.68)
    assert (frames["mjwarp"] - frames["mujoco_cpu"]).abs().mean() < 0.1  # the same pixels (measured: equal)


def test_eval_writes_a_coverage_plot_and_a_video(tmp_path):
    """`robolearn eval expert:push-t`: report, coverage-over-time PNG and the top camera MP4 through robolearn.eval."""
    pytest.importorskip("matplotlib")
    av = pytest.importorskip("av")
    import json

    from robolearn.cli.main import main

    assert main(["eval", "expert:push-t", "--episodes", "2", "--seed", "3", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["task"] == "push-t" and report["success"] == 1.0 and report["max_coverage"] > 0.95
    assert (tmp_path / "coverage.png").stat().st_size > 10_000
    with av.open(str(tmp_path / "episodes.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    # one frame per policy step of the longer episode plus its first state (≥ the mean length); two 192 px views
    assert round(report["length_s"] * 10) + 1 <= len(frames) <= 301
    assert frames[0].shape == (192, 2 * 192 + 4, 3)
    assert frames[0].std() > 10 and not (frames[0] == frames[-1]).all()


def test_collect_records_expert_demos_with_the_top_view(tmp_path):
    """`robolearn collect --task push-t --device expert`: a successful episode, state + 96×96 top view + actions."""
    import numpy as np

    from robolearn.cli.main import main
    from robolearn.data.store import EpisodeStore

    out = tmp_path / "pusht.zarr"
    assert main(["collect", "--task", "push-t", "--device", "expert", "--out", str(out), "--episodes", "1",
                 "--seed", "3", "--only-success"]) == 0
    store = EpisodeStore(out)
    assert store.num_episodes == 1
    ep = store.read_episode(0, ["observation.policy", "observation.images.camera", "action", "next.success"])
    assert ep["observation.images.camera"].shape[1:] == (96, 96, 3)
    assert ep["observation.images.camera"].std() > 10
    assert ep["observation.policy"].shape[1] == 5 and bool(ep["next.success"][-1])
    assert np.abs(ep["action"]).max() <= 1.0
