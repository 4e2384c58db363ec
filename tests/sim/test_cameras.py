"""Camera terms on the CPU backend: nested policy group, declared shapes, images that show the scene."""

import pytest
import torch

from robolearn.core.errors import MissingExtraError, RobolearnError
from robolearn.envs import registry
from robolearn.sim.backend import import_mujoco

try:  # before anything imports mujoco: EGL offscreen rendering on a machine without a display
    import_mujoco()
except MissingExtraError as e:
    pytest.skip(str(e), allow_module_level=True)


def make(**kw):
    try:
        return registry.make("arm-lift", num_envs=3, seed=0, **kw)
    except RobolearnError as e:  # pragma: no cover - machines without EGL/OSMesa
        if "offscreen renderer" in str(e):
            pytest.skip(str(e))
        raise


def test_images_have_the_declared_shape_and_are_not_blank():
    env = make(cameras=("wrist", "front"), depth=True, image_size=(48, 64))
    obs = env.reset()
    policy = obs["policy"]
    assert set(policy) == {"state", "rgb_wrist", "depth_wrist", "rgb_front", "depth_front"}
    assert policy["state"].shape == (3, env.spec.obs_dims["policy"])
    for name, shape in env.image_shapes().items():
        assert policy[name].shape == (3, *shape)
    for cam in ("wrist", "front"):
        rgb, depth = policy[f"rgb_{cam}"], policy[f"depth_{cam}"]
        assert rgb.dtype == torch.uint8 and depth.dtype == torch.float32
        assert rgb.float().std() > 10  # not a blank frame
        assert torch.isfinite(depth).all() and (depth > 0).all()
    # the wrist camera looks down at the table between the fingers: nearby surfaces, 0.1–1 m
    assert 0.1 < float(policy["depth_wrist"].median()) < 1.0
    # the cube (red) is in the wrist view and the envs differ (cube positions are randomized)
    red = policy["rgb_wrist"][..., 0].float() - policy["rgb_wrist"][..., 1:].float().mean(-1)
    assert (red > 80).any()
    assert not torch.equal(policy["rgb_wrist"][0], policy["rgb_wrist"][1])


def test_nested_observations_survive_auto_reset():
    env = make(cameras=("wrist",), image_size=(32, 32), episode_length_s=0.06)
    env.reset()
    for _ in range(env.cfg.max_episode_steps):
        res = env.step(torch.zeros(3, env.spec.action.dim))
    assert res.truncated.all()
    assert res.obs["policy"]["rgb_wrist"].shape == (3, 32, 32, 3)
    assert res.info["final_obs"]["policy"]["state"].shape == (3, env.spec.obs_dims["policy"])


def test_unknown_camera_is_a_config_error():
    with pytest.raises(RobolearnError, match="arm-lift: unknown camera 'top'"):
        registry.make("arm-lift", num_envs=1, cameras=("top",))
