"""How closely `push-t` (MuJoCo) follows gym-pusht's pymunk physics: the same starts and actions in both.

    pip install pymunk            # not a robolearn dependency; only this check needs it
    python sim_assets/pusht/compare_pymunk.py [--episodes 40] [--seed 0]

The pymunk side re-creates gym-pusht's `_setup`, `add_tee`, `_set_state` and `step` (PD on a kinematic disc,
space damping 0, dt 0.01 s, 10 substeps per action); gym-pusht itself is not needed. Each episode starts from
gym-pusht's random initial state and drives the pusher through the block and around it (72 actions, 7.2 s);
the script prints how far the block's pose ends up apart in the two simulators (pixels, degrees).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def pymunk_rollout(state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """gym-pusht's physics: block (x, y, angle) [px, rad] after each action."""
    import pymunk
    from pymunk.vec2d import Vec2d

    space = pymunk.Space()
    space.gravity, space.damping = (0, 0), 0.0  # damping 0: bodies keep none of their velocity between steps
    for a, b in [((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506))]:
        space.add(pymunk.Segment(space.static_body, a, b, 2))
    agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
    space.add(agent, pymunk.Circle(agent, 15))
    bar = [(-60, 30), (60, 30), (60, 0), (-60, 0)]
    stem = [(-15, 30), (-15, 120), (15, 120), (15, 30)]
    moment = pymunk.moment_for_poly(1, vertices=bar)
    block = pymunk.Body(1, moment + moment)  # gym-pusht adds the bar's moment twice
    s1, s2 = pymunk.Poly(block, bar), pymunk.Poly(block, stem)
    block.center_of_gravity = (s1.center_of_gravity + s2.center_of_gravity) / 2
    space.add(block, s1, s2)
    agent.position = list(state[:2])
    block.position = list(state[2:4])
    block.angle = state[4]
    space.step(0.01)
    out = []
    for a in actions:
        for _ in range(10):
            agent.velocity += (100 * (Vec2d(*a) - agent.position) + 20 * (Vec2d(0, 0) - agent.velocity)) * 0.01
            space.step(0.01)
        out.append([*block.position, block.angle])
    return np.array(out)


def make_episodes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """gym-pusht's initial states and action sequences that push the block: through it, then around it [px]."""
    rs = np.random.RandomState(seed)
    states, actions = [], []
    for _ in range(n):
        s = np.array([rs.randint(50, 450), rs.randint(50, 450), rs.randint(100, 400), rs.randint(100, 400),
                      rs.randn() * 2 * np.pi - np.pi], float)
        centre = s[2:4] + np.array([0.0, 45.0])
        start, aim = s[:2], centre + rs.uniform(-40, 40, 2)
        beyond = aim + (aim - start) / max(np.linalg.norm(aim - start), 1.0) * 120
        acts = [start + t * (beyond - start) for t in np.linspace(0, 1, 30)]
        q = beyond
        for _ in range(3):
            nxt = centre + rs.uniform(-120, 120, 2)
            acts += [q + t * (nxt - q) for t in np.linspace(0, 1, 15)[1:]]
            q = nxt
        states.append(s)
        actions.append(np.clip(np.array(acts), 0, 512))
    return np.array(states), np.array(actions)


def main() -> None:
    """Run both simulators and print the final block pose differences."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    opt = ap.parse_args()
    from robolearn.envs import registry
    from robolearn.envs.manipulation.pusht import HALF_WORKSPACE, px_to_world, world_to_px

    states, actions = make_episodes(opt.episodes, opt.seed)
    ref = np.stack([pymunk_rollout(s, a) for s, a in zip(states, actions, strict=True)])
    env = registry.make("push-t", num_envs=opt.episodes, seed=0, terminate_on_success=False)
    env.reset()
    env.set_states(torch.arange(opt.episodes), px_to_world(torch.as_tensor(states)))
    ours = []
    for t in range(actions.shape[1]):
        px = np.concatenate((actions[:, t], np.zeros((opt.episodes, 3))), -1)
        target = px_to_world(torch.as_tensor(px))[:, :2] / HALF_WORKSPACE
        env.step(target)
        agent_block = torch.cat((env.agent_pos, env.block_pose), -1)
        ours.append(world_to_px(agent_block).numpy()[:, 2:])
    ours = np.stack(ours, 1)
    moved = np.linalg.norm(ref[:, -1, :2] - states[:, 2:4], axis=-1)
    d_pos = np.linalg.norm(ours[:, -1, :2] - ref[:, -1, :2], axis=-1)
    d_ang = np.degrees(np.abs(np.angle(np.exp(1j * (ours[:, -1, 2] - ref[:, -1, 2])))))
    print(f"{opt.episodes} episodes, block moved {np.median(moved):.0f} px (median) in pymunk")
    print(f"final block position difference [px]: median {np.median(d_pos):.1f}, mean {d_pos.mean():.1f}, "
          f"90th pct {np.percentile(d_pos, 90):.1f}, max {d_pos.max():.1f}")
    print(f"final block angle difference [deg]:   median {np.median(d_ang):.1f}, mean {d_ang.mean():.1f}, "
          f"90th pct {np.percentile(d_ang, 90):.1f}, max {d_ang.max():.1f}")
    print(f"episodes within 5 px and 5 deg: {np.mean((d_pos < 5) & (d_ang < 5)) * 100:.0f} %")


if __name__ == "__main__":
    main()
