"""A real, trained quadrotor-hover artifact in seconds: behaviour-clone the PD expert into an MLPPolicy.

The ROS loop tests need a policy that actually flies. The RL hover policy is trained elsewhere; to swap it in,
point ROBOLEARN_HOVER_ARTIFACT at an exported artifact directory (rpm mode) and the fixture uses it instead.
"""

from __future__ import annotations

from pathlib import Path

import torch

from robolearn.envs import registry
from robolearn.export import export_policy
from robolearn.networks.mlp import MLPPolicy

NEAR_HOVER = dict(init_pos=0.1, init_max_angle_deg=15.0, init_lin_vel=0.2, init_ang_vel=0.3)


def bc_hover_policy(seed: int = 0, iters: int = 4, steps: int = 50, envs: int = 128, epochs: int = 80) -> MLPPolicy:
    """DAgger on the PD expert: roll out the learner, label every visited state with the expert (~10 s, 1 thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest, and the test machine's cores are shared
    try:
        return _dagger(seed, iters, steps, envs, epochs)
    finally:
        torch.set_num_threads(threads)


def _dagger(seed: int, iters: int, steps: int, envs: int, epochs: int) -> MLPPolicy:
    torch.manual_seed(seed)
    env = registry.make("quadrotor-hover", num_envs=envs, seed=seed, action_mode="rpm", **NEAR_HOVER)
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
            y = env.expert_action(obs)
            xs.append(x)
            ys.append(y)
            with torch.no_grad():
                a = y if it == 0 else policy(x)
            obs = env.step(a).obs
        X, Y = torch.cat(xs), torch.cat(ys)
        policy.normalizer.update(X[-envs * steps:])
        for _ in range(epochs):
            idx = torch.randint(0, len(X), (1024,))
            loss = (policy.forward_raw(X[idx]).tanh() - Y[idx]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return policy.eval()


def make_hover_artifact(out: Path, seed: int = 0) -> Path:
    """Train (seconds) and export an rpm-mode hover artifact with ONNX and C targets."""
    env = registry.make("quadrotor-hover", num_envs=1, action_mode="rpm")
    policy = bc_hover_policy(seed)
    return export_policy(policy, env.spec, out, source={"kind": "bc-pd-expert", "seed": seed}, targets=("onnx", "c"))
