"""A real, trained quadrotor-hover artifact in seconds: behaviour-clone the PD expert into an MLPPolicy.

Shared by the ROS, firmware-app and replay tests.

The ROS loop tests need a policy that actually flies. The RL hover policy is trained elsewhere; to swap it in,
point ROBOLEARN_HOVER_ARTIFACT at an exported artifact directory (rpm mode) and the fixture uses it instead.
"""

from __future__ import annotations

from pathlib import Path

import torch

from robolearn.envs import registry
from robolearn.envs.quadrotor.expert import PDGains, pd_rpm_action
from robolearn.export import export_policy
from robolearn.networks.mlp import MLPPolicy

NEAR_HOVER = dict(init_pos=0.1, init_max_angle_deg=15.0, init_lin_vel=0.2, init_ang_vel=0.3)


def ctbr_pd_action(obs: torch.Tensor, p, max_rate: float = 6.0, pos_p: float = 2.0, pos_d: float = 2.0,
                   k_att: float = 3.0, max_tilt_acc: float = 6.0) -> torch.Tensor:
    """A cascaded PD for `ctbr` mode (the task's own expert commands motors): position PD → collective thrust
    along the body z-axis and a desired z-axis; attitude error → body-rate setpoints (the firmware's rate loop
    does the rest). Normalized as the task's ctbr action terms: thrust (T − mg)/mg, rates / max_body_rate."""
    e, rot, v = obs[:, 0:3], obs[:, 3:12].reshape(-1, 3, 3), obs[:, 12:15]
    acc = -pos_p * e - pos_d * v
    h = acc[:, :2]
    h = h * (max_tilt_acc / h.norm(dim=-1, keepdim=True).clamp_min(1e-9)).clamp(max=1.0)
    acc = torch.cat((h, acc[:, 2:] + p.gravity), -1)
    z_body = rot[:, :, 2]
    thrust = p.mass * (acc * z_body).sum(-1).clamp_min(0.0)
    z_des = acc / acc.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    err_body = torch.einsum("nji,nj->ni", rot, torch.linalg.cross(z_body, z_des))
    rates = torch.cat((k_att * err_body[:, :2], torch.zeros_like(err_body[:, 2:])), -1)
    weight = p.mass * p.gravity
    return torch.cat((((thrust - weight) / weight).unsqueeze(-1), rates / max_rate), -1).clamp(-1.0, 1.0)


# the task's expert without its motor-lag inversion (which reads the action history, and the clone ignores it)
MEMORYLESS = PDGains(pos_p=1.0, pos_d=1.5, att_p=20.0, att_d=6.0, max_tilt_acc=6.0, lag_compensation=False)


def expert(env, obs) -> torch.Tensor:
    """The task's PD expert, memoryless (rpm), or the ctbr PD above."""
    if env.cfg.action_mode == "rpm":
        return pd_rpm_action(obs["policy"], env.params, MEMORYLESS)
    return ctbr_pd_action(obs["policy"], env.params)


def bc_hover_policy(seed: int = 0, iters: int = 4, steps: int = 50, envs: int = 128, epochs: int = 80,
                    mode: str = "rpm") -> MLPPolicy:
    """DAgger on the PD expert: roll out the learner, label every visited state with the expert (~10 s, 1 thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest, and the test machine's cores are shared
    try:
        return _dagger(seed, iters, steps, envs, epochs, mode)
    finally:
        torch.set_num_threads(threads)


def _dagger(seed: int, iters: int, steps: int, envs: int, epochs: int, mode: str) -> MLPPolicy:
    torch.manual_seed(seed)
    env = registry.make("quadrotor-hover", num_envs=envs, seed=seed, action_mode=mode, **NEAR_HOVER)
    policy = MLPPolicy(env.spec.obs_dims["policy"], 4, hidden=(64, 64), activation="tanh", output="tanh")
    # the expert never looks at the action history; a cloned policy that could would copy its own previous action
    # (causal confusion), so the first layer's history columns stay zero: same architecture, no shortcut
    first = policy.mlp.linears[0]
    mask = torch.zeros_like(first.weight)
    mask[:, :18] = 1.0
    with torch.no_grad():
        first.weight.mul_(mask)
    first.weight.register_hook(lambda g: g * mask)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    xs, ys = [], []
    for it in range(iters):
        obs = env.reset()
        for _ in range(steps):
            x = obs["policy"]
            y = expert(env, obs)
            xs.append(x)
            ys.append(y)
            with torch.no_grad():
                a = y if it == 0 else policy(x)
            obs = env.step(a).obs
        fit_clone(policy, opt, xs, ys, envs * steps, epochs)
    return policy.eval()


def fit_clone(policy: MLPPolicy, opt: torch.optim.Optimizer, xs: list[torch.Tensor], ys: list[torch.Tensor],
              new_rows: int, epochs: int) -> None:
    """One DAgger fit: the normalizer sees the newest `new_rows` states, then regression on all labels so far."""
    X, Y = torch.cat(xs), torch.cat(ys)
    policy.normalizer.update(X[-new_rows:])
    for _ in range(epochs):
        idx = torch.randint(0, len(X), (1024,))
        loss = (policy.forward_raw(X[idx]).tanh() - Y[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def make_hover_artifact(out: Path, seed: int = 0, mode: str = "rpm") -> Path:
    """Train (seconds) and export a hover artifact (ONNX; C too for rpm, what the firmware app runs)."""
    env = registry.make("quadrotor-hover", num_envs=1, action_mode=mode)
    policy = bc_hover_policy(seed, mode=mode)
    targets = ("onnx", "c") if mode == "rpm" else ("onnx",)
    return export_policy(policy, env.spec, out, source={"kind": f"bc-pd-expert-{mode}", "seed": seed}, targets=targets)
