"""mjwarp cameras: MuJoCo Warp's ray tracer (`WarpRenderer`) against MuJoCo's OpenGL (`BatchRenderer`).

Both run here on the CPU (warp's CPU device, EGL software GL). Images are not pixel-equal (different lighting
models, no anti-aliasing; see robolearn/sim/warp_render.py), so agreement is checked on geometry: depth, and the
mask of pixels an object covers. The first run compiles warp's render kernels (~10 s on the 2-core test machine,
cached in ~/.cache/warp; the mjwarp physics kernels, shared with tests/sim/test_mujoco_backends.py, take longer).
"""

import pytest
import torch

from robolearn.core.errors import ConfigError, RobolearnError
from robolearn.envs import registry
from robolearn.sim.backend import import_mujoco

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SIZE = (48, 48)
NEAR_CAMERA = (0.95, 0.0, 0.5)
"""A point ~0.5 m in front of arm-lift's front camera (at (1.4, 0, 0.7), looking down the -x axis and 24° down)."""


def _need_warp() -> None:
    import_mujoco()  # picks EGL before anything imports mujoco (importing mujoco_warp does)
    pytest.importorskip("mujoco_warp")


def _move_cube(env, env_id: int, pos) -> None:
    """Teleport env `env_id`'s cube to `pos` (world frame), at rest, on the backend directly (no physics step)."""
    ids = torch.tensor([env_id], device=env.sim.device)
    qpos, qvel = env.sim.qpos[ids].clone(), env.sim.qvel[ids].clone()
    qpos[0, env.cube_qpos : env.cube_qpos + 3] = torch.tensor(pos, device=qpos.device)
    env.sim.reset_idx(ids, qpos, qvel, env.sim.ctrl[ids].clone())


@pytest.fixture(scope="module")
def arm_envs():
    """arm-lift on both backends, 2 envs, same seed (same starts, same randomized cube sizes), 48×48 front camera;
    env 1's cube teleported in front of the camera."""
    _need_warp()
    envs = {b: registry.make("arm-lift", num_envs=2, seed=0, backend=b, device="cpu", cameras=("front",),
                             depth=True, image_size=SIZE) for b in ("mujoco_cpu", "mjwarp")}
    for env in envs.values():
        env.reset()
        _move_cube(env, 1, NEAR_CAMERA)
    return envs


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum().clamp(min=1))


def test_warp_camera_shapes_depth_and_agreement_with_opengl(arm_envs):
    from robolearn.sim.warp_render import WarpRenderer

    cpu, warp = arm_envs["mujoco_cpu"], arm_envs["mjwarp"]
    assert torch.equal(cpu.cube_half, warp.cube_half)
    rgb_c, dep_c = cpu.render_camera("front", depth=True)
    rgb_w, dep_w = warp.render_camera("front", depth=True)
    assert isinstance(warp._renderer, WarpRenderer)
    assert rgb_w.shape == (2, *SIZE, 3) and rgb_w.dtype == torch.uint8
    assert dep_w.shape == (2, *SIZE) and dep_w.dtype == torch.float32
    assert rgb_w.float().std() > 20  # not blank: dark sky, lit table, grey arm, red cube
    assert torch.isfinite(dep_w).all() and (dep_w > 0.05).all()
    hit = dep_w < warp._renderer.zfar  # rays that hit geometry (the rest read the far plane, as MuJoCo's)
    assert 0.5 < hit.float().mean() < 1.0  # table and arm below the horizon, sky above
    assert 0.3 < dep_w[hit].median() < 3.0  # the camera is ~1.5 m from the workspace
    # geometry agrees with MuJoCo's OpenGL: planar depth of the hit pixels, sky mask
    both = hit & (dep_c < warp._renderer.zfar * 0.99)
    assert _iou(hit, dep_c < warp._renderer.zfar * 0.99) > 0.97  # measured 1.0
    rel = ((dep_w - dep_c).abs() / dep_c)[both]
    # measured: median 2e-7, every pixel within 2 %; edge pixels may see another surface
    assert rel.median() < 1e-3 and (rel < 0.02).float().mean() > 0.95
    # colours: same materials and lights, different shading model (measured: mean |Δ| 1.5 of 255 levels per
    # pixel and channel, image means within 0.8)
    assert (rgb_w.float() - rgb_c.float()).abs().mean() < 6
    assert (rgb_w.float().mean((0, 1, 2)) - rgb_c.float().mean((0, 1, 2))).abs().max() < 4


def test_warp_camera_shows_a_moved_object_where_opengl_does(arm_envs):
    cpu, warp = arm_envs["mujoco_cpu"], arm_envs["mjwarp"]
    masks = {}
    for name, env in (("cpu", cpu), ("warp", warp)):
        rgb, dep = env.render_camera("front", depth=True)
        assert not torch.equal(rgb[0], rgb[1])  # env 1's cube moved, env 0's did not
        masks[name] = (dep[0] - dep[1]).abs() > 0.01  # where env 1's view differs: the cube and its old spot
    area = int(masks["warp"].sum())
    assert 20 < area < 400  # the cube (~0.5 m away, ~10×10 px) plus its old spot (measured 101 px)
    assert _iou(masks["warp"], masks["cpu"]) > 0.9  # measured 0.99 (one edge pixel)


def test_warp_camera_shows_per_env_geom_size(arm_envs):
    """A randomized geom size (per-world model row) is drawn: a larger cube in env 1 covers more pixels."""
    warp = arm_envs["mjwarp"]
    ids, geom = torch.tensor([1]), [warp.cube_geom]
    before = warp.sim.get_params("geom_size", geom)[1].clone()
    _, dep0 = warp.render_camera("front", depth=True)
    try:
        warp.sim.set_params(ids, "geom_size", geom, torch.tensor([[2.0]]))  # nominal × 2
        _, dep1 = warp.render_camera("front", depth=True)
    finally:
        nominal = warp.sim._nominal["geom_size"][1, warp.cube_geom, 0]
        warp.sim.set_params(ids, "geom_size", geom, (before / nominal).reshape(1, 1))
    near0, near1 = (dep0[1] < 0.6).sum(), (dep1[1] < 0.6).sum()  # the cube, ~0.5 m from the camera
    assert near1 > 2.5 * near0 > 0  # edge ×2 -> area ×~4
    assert torch.equal(dep0[0], dep1[0])  # env 0 untouched


def test_warp_camera_follows_the_simulation(arm_envs):
    """After policy steps (the arm moves, the teleported cube falls) the BVH refit shows the new state, still in
    agreement with OpenGL. Runs after the tests above: it changes the fixture's state."""
    cpu, warp = arm_envs["mujoco_cpu"], arm_envs["mjwarp"]
    before = warp.render_camera("front", depth=True)[1]
    action = torch.zeros(2, warp.spec.action.dim)
    action[:, 2] = -1.0  # TCP down
    for _ in range(5):
        obs = {b: env.step(action).obs["policy"] for b, env in arm_envs.items()}
    assert (cpu.sim.qpos - warp.sim.qpos).abs().max() < 1e-3
    dep_w, dep_c = obs["mjwarp"]["depth_front"], obs["mujoco_cpu"]["depth_front"]
    moved_w, moved_c = (dep_w - before).abs() > 0.01, (dep_c - before).abs() > 0.01
    assert moved_w.sum() > 50  # the scene moved (measured 216 of 4608 pixels)
    assert _iou(moved_w, moved_c) > 0.9  # measured 0.995
    assert ((dep_w - dep_c).abs() / dep_c).median() < 1e-3


def test_bad_camera_names_are_one_clear_error(arm_envs):
    from robolearn.sim.mujoco_cpu import BatchRenderer
    from robolearn.sim.warp_render import WarpRenderer

    warp, cpu = arm_envs["mjwarp"], arm_envs["mujoco_cpu"]
    with pytest.raises(ConfigError, match=r"arm-lift: unknown camera 'top' \(wrist, front\)"):
        warp.render_camera("top")
    for renderer in (warp._renderer, cpu._renderer):
        with pytest.raises(RobolearnError, match=r"arm-lift: no camera 'top' in the model \(cameras: front, wrist\)"):
            renderer.render("top")
    with pytest.raises(RobolearnError, match="arm-lift: WarpRenderer renders the mjwarp backend only"):
        WarpRenderer(cpu.sim, 16, 16, "arm-lift")
    with pytest.raises(RobolearnError, match="arm-lift: BatchRenderer renders the mujoco_cpu backend only"):
        BatchRenderer(warp.sim, 16, 16, "arm-lift")


def test_pusht_top_camera_on_mjwarp():
    """Push-T's orthographic top camera through the warp renderer: policy images and the larger video frames."""
    _need_warp()
    envs = {b: registry.make("push-t", num_envs=2, seed=0, backend=b, device="cpu", cameras=("top",))
            for b in ("mujoco_cpu", "mjwarp")}
    obs = {b: e.reset()["policy"]["rgb_top"] for b, e in envs.items()}
    cpu, warp = obs["mujoco_cpu"], obs["mjwarp"]
    assert warp.shape == (2, 96, 96, 3) and warp.dtype == torch.uint8
    assert (warp.float() - cpu.float()).abs().mean() < 8

    def grey_block(img):  # the T block (0.467, 0.533, 0.6): bluish grey, darker than the white floor and the goal
        r, g, b = img.unbind(-1)
        return (b > r + 10) & (b < 200) & (r > 60)

    assert grey_block(warp).sum() > 100
    assert _iou(grey_block(warp), grey_block(cpu)) > 0.8
    frames = envs["mjwarp"].render([1], size=(64, 80))
    assert frames.shape == (1, 64, 80, 3) and frames.float().std() > 10
    assert not [k for k in envs["mjwarp"].state_dict() if "render" in k]  # renderers hold no env state


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_warp_camera_on_cuda_stays_on_the_gpu():
    """On CUDA the images come back as CUDA tensors (no host copy) and show the scene (not run on the CPU machine)."""
    _need_warp()
    env = registry.make("arm-lift", num_envs=2, seed=0, backend="mjwarp", device="cuda", cameras=("front",),
                        depth=True, image_size=SIZE)
    obs = env.reset()["policy"]
    rgb, dep = obs["rgb_front"], obs["depth_front"]
    assert rgb.is_cuda and dep.is_cuda and rgb.shape == (2, *SIZE, 3) and rgb.dtype == torch.uint8
    assert rgb.float().std() > 20 and torch.isfinite(dep).all()
    assert 0.3 < dep[dep < env._renderer.zfar].median() < 3.0
