"""Differential IK (robolearn.core.kinematics): numpy = torch, the Jacobian is MuJoCo's, DLS steps move the TCP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.core.errors import ConfigError
from robolearn.core.kinematics import MjArmKinematics, dls_step, hinge_jacobian

ARM = Path(__file__).resolve().parents[2] / "sim_assets" / "franka_arm" / "scene_reach.xml"
JOINTS = [f"joint{i}" for i in range(1, 8)]
HOME = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785])


def test_numpy_and_torch_agree_and_dls_solves_a_reachable_step():
    rng = np.random.default_rng(0)
    axis = rng.normal(size=(2, 7, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    anchor, point, err = rng.normal(size=(2, 7, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 6)) * 1e-3
    jac = hinge_jacobian(axis, anchor, point)
    assert jac.shape == (2, 6, 7)
    np.testing.assert_allclose(jac[0, :3, 2], np.cross(axis[0, 2], point[0] - anchor[0, 2]))
    jt = hinge_jacobian(*(torch.as_tensor(x) for x in (axis, anchor, point)))
    np.testing.assert_allclose(jt.numpy(), jac, atol=1e-12)
    dq = dls_step(jac, err, 1e-4)
    np.testing.assert_allclose(dls_step(jt, torch.as_tensor(err), 1e-4).numpy(), dq, atol=1e-9)
    np.testing.assert_allclose(np.einsum("bij,bj->bi", jac, dq), err, atol=1e-6)  # 7 joints: J dq = e exactly
    big = dls_step(jac, err * 1e6, 0.5)  # damping shortens steps it cannot take exactly
    assert np.linalg.norm(big) < np.linalg.norm(dls_step(jac, err * 1e6, 1e-4))


def test_mujoco_arm_jacobian_matches_mj_jac_and_ik_moves_the_tcp():
    mujoco = pytest.importorskip("mujoco")
    kin = MjArmKinematics(ARM, JOINTS, "tcp")
    jac = kin.jacobian(HOME)
    jp, jr = np.zeros((3, kin.model.nv)), np.zeros((3, kin.model.nv))
    mujoco.mj_comPos(kin.model, kin.data)  # mj_jac reads the com-based dof frames
    mujoco.mj_jacSite(kin.model, kin.data, jp, jr, kin.site)
    dofs = [kin.model.jnt_dofadr[j] for j in kin.joints]
    np.testing.assert_allclose(jac, np.vstack([jp[:, dofs], jr[:, dofs]]), atol=1e-10)
    p0, r0 = kin.tcp(HOME)
    dpos = np.array([0.01, -0.005, 0.02])
    p1, r1 = kin.tcp(kin.ik_step(HOME, dpos, np.zeros(3), damping=0.01))
    np.testing.assert_allclose(p1 - p0, dpos, atol=1e-3)  # first order: a 2.3 cm step within 1 mm
    assert np.linalg.norm(r1 - r0) < 5e-3  # orientation held
    with pytest.raises(ConfigError, match="no joint\\(s\\) \\['joint9'\\]"):
        MjArmKinematics(ARM, [*JOINTS[:6], "joint9"])
    with pytest.raises(ConfigError, match="no site 'nose'"):
        MjArmKinematics(ARM, JOINTS, "nose")
