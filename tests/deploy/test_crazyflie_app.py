"""deploy/crazyflie: the firmware app's portable core + generated C policy, built and checked on the host.

Outputs equal torch within tolerance over a sequence of steps (observation built in C from the state estimate,
action history carried), no dynamic allocation (nm), bounded static stack (-fstack-usage), per-step time.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.envs.registry import make
from robolearn.export import export_policy
from robolearn.networks.mlp import MLPPolicy

APP = Path(__file__).resolve().parents[2] / "deploy" / "crazyflie"
RPM_MAX = 21702.0

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None,
                                reason="needs a C compiler and make")


def quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "pos-error-integral"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[MLPPolicy, Path, Path, dict]:
    """The app built for a hover policy without and with the `pos_error_integral` observation term."""
    torch.manual_seed(0)
    env = make("quadrotor-hover", num_envs=1, action_mode="rpm", pos_error_integral=request.param)
    policy = MLPPolicy(env.spec.obs_dims["policy"], 4, hidden=(64, 64), activation="tanh", output="tanh")
    with torch.no_grad():
        for lin in policy.mlp.linears:
            lin.weight.normal_(0.0, 0.3)  # outputs well inside (-1, 1), not the near-zero init
        policy.normalizer.update(torch.randn(512, env.spec.obs_dims["policy"]) * 0.3)
    tmp = tmp_path_factory.mktemp("cf")
    art = export_policy(policy, env.spec, tmp / "artifact", source={"kind": "test"}, targets=("c",))
    build = tmp / "build"
    r = subprocess.run(["make", "-s", "-f", "host.mk", "test", f"POLICY={art / 'c'}", f"BUILD={build}"], cwd=APP,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    spec = env.spec.action.terms[0]
    return policy.eval(), build, art, {"scale": np.array(spec.scale), "offset": np.array(spec.offset), "log": r.stdout,
                                       "integral": request.param, "rate_hz": env.spec.action.rate_hz}


def test_c_app_steps_match_torch(app):
    policy, build, _, act = app
    rng = np.random.default_rng(1)
    n = 40
    rows = []
    for _ in range(n):
        q = np.concatenate([rng.normal(0, 0.1, 3), [1.0]])
        rows.append(np.concatenate([rng.normal(0, 0.2, 3) + [0, 0, 1], rng.normal(0, 0.3, 3), q / np.linalg.norm(q),
                                    rng.normal(0, 30, 3), [0.0, 0.0, 1.0]]))
    text = "\n".join(" ".join(f"{v:.9g}" for v in r.astype(np.float32)) for r in rows) + "\n"
    out = subprocess.run([str(build / "rl_host"), "step"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = np.array([[float(v) for v in line.split()] for line in out.stdout.splitlines()])
    hist, integral = np.zeros((32, 4)), np.zeros(3)
    for i, r in enumerate(np.asarray(rows, dtype=np.float32).astype(np.float64)):
        if i:  # the simulator's ∫ e dt: 0 in the first observation, each step + dt · error, clamped to ±1 m·s
            integral = np.clip(integral + (r[0:3] - r[13:16]) / act["rate_hz"], -1.0, 1.0)
        obs = np.concatenate([r[0:3] - r[13:16], quat_to_rotmat(r[6:10]).reshape(-1), r[3:6], np.radians(r[10:13]),
                              *([integral] if act["integral"] else []), hist.reshape(-1)])
        with torch.no_grad():
            a = policy(torch.tensor(obs, dtype=torch.float32).unsqueeze(0))[0].double().numpy()
        forces = np.clip(((act["offset"] + act["scale"] * a) / RPM_MAX) ** 2, 0, 1)
        np.testing.assert_allclose(got[i, :4], a, atol=2e-5, err_msg=f"step {i} action")
        np.testing.assert_allclose(got[i, 4:], forces, atol=2e-5, err_msg=f"step {i} forces")
        hist = np.roll(hist, 1, axis=0)
        hist[0] = got[i, :4]  # the history the drone actually has
    assert np.abs(got[:, :4]).max() > 0.05  # the comparison is not between two zeros


def test_non_finite_state_is_rejected(app):
    _, build, _, _ = app
    row = "0 0 1 0 0 0 0 0 0 1 nan 0 0 0 0 1\n0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 1\n"  # NaN gyro; zero quaternion
    out = subprocess.run([str(build / "rl_host"), "step"], input=row, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["reject", "reject"]


def test_no_dynamic_allocation_and_bounded_stack(app):
    _, build, _, _ = app
    undefined = subprocess.run(["nm", "-u", str(build / "rl_obs.o"), str(build / "rl_policy.o")],
                               capture_output=True, text=True).stdout.split()
    assert not {"malloc", "calloc", "realloc", "free"} & set(undefined)
    usage = {}
    for su in (build / "rl_obs.su", build / "rl_policy.su"):
        for line in su.read_text().splitlines():
            where, size, kind = line.split("\t")
            usage[where.rsplit(":", 1)[-1]] = (int(size), kind)
    assert all(kind == "static" for _, kind in usage.values()), usage  # no VLAs/alloca: a compile-time bound
    assert usage["rl_step"][0] + usage["rl_policy_eval"][0] < 2048, usage


def test_step_time_is_measured(app):
    _, build, _, _ = app
    out = subprocess.run([str(build / "rl_host"), "bench", "2000"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and float(out.stdout) > 0.0  # figure only; targets live in BENCHMARKS.md


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="gcc-arm-none-eabi not installed")
def test_cortex_m4_cross_compile(app, tmp_path):
    _, _, art, _ = app
    r = subprocess.run(["make", "-s", "-f", "host.mk", "arm", f"POLICY={art / 'c'}", f"BUILD={tmp_path}"], cwd=APP,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rl_policy.arm.o" in r.stdout
