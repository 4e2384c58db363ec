"""The manipulation benchmarks run end to end at tiny sizes and report the keys BENCHMARKS.md quotes."""

import pytest

from robolearn.core.errors import MissingExtraError
from robolearn.sim.backend import import_mujoco

try:
    import_mujoco()
except MissingExtraError as e:
    pytest.skip(str(e), allow_module_level=True)

from robolearn.envs.manipulation import bench  # noqa: E402


def test_manip_step_reports_env_and_raw_rates():
    out = bench.manip_step(["--num-envs", "4", "--steps", "2", "--warmup", "1"])
    assert {"steps_per_s", "task", "backend", "num_envs", "raw_steps_per_s"} <= set(out)
    assert out["steps_per_s"] > 0 and out["raw_steps_per_s"] > 0 and out["num_envs"] == 4


def test_render_and_expert_success():
    out = bench.render(["--num-envs", "2", "--frames", "2", "--sizes", "32"])
    assert out["frames_per_s"] > 0 and set(out["frames_per_s_by_size"]) == {"32x32"}
    assert out["backend"] == "mujoco_cpu" and out["device"] == "cpu"
    out = bench.expert_success(["--tasks", "arm-reach", "--episodes", "4"])
    assert set(out["tasks"]) == {"arm-reach"} and out["success_rate"] == out["tasks"]["arm-reach"]


def test_render_on_mjwarp_reports_the_backend_and_device():
    pytest.importorskip("mujoco_warp")
    out = bench.render(["--backend", "mjwarp", "--device", "cpu", "--num-envs", "2", "--frames", "2", "--sizes", "16"])
    assert out["backend"] == "mjwarp" and out["device"] == "cpu" and out["frames_per_s"] > 0
