"""A state-based push-t MLP trained by DAgger on the scripted expert, exported, for the gym-pusht transfer figure.

    PYTHONPATH=. python tests/eval/pusht_dagger.py OUT_DIR [--iters 8] [--envs 128] [--seed 0]

Trains in robolearn's push-t (MuJoCo), exports the artifact to OUT_DIR and evaluates it there through the runtime;
then `robolearn eval OUT_DIR --external gym-pusht` measures it on gym-pusht (BENCHMARKS.md, "external benchmarks").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from robolearn.envs import registry
from robolearn.export import export_policy
from robolearn.networks.mlp import MLPPolicy


def dagger(iters: int, envs: int, seed: int, epochs: int = 400) -> MLPPolicy:
    """Roll out the learner (the expert in round 0), label every visited state with the expert, refit."""
    torch.manual_seed(seed)
    env = registry.make("push-t", num_envs=envs, seed=seed)
    policy = MLPPolicy(5, 2, hidden=(256, 256), activation="elu", output="clamp")
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for it in range(iters):
        obs = env.reset()
        succ: list[float] = []
        for _ in range(env.cfg.max_episode_steps):
            x, y = obs["policy"], env.expert_action(obs)
            xs.append(x)
            ys.append(y)
            with torch.no_grad():
                a = y if it == 0 else policy(x)
            res = env.step(a)
            obs = res.obs
            if "episode" in res.info:
                succ += res.info["episode"]["success"].tolist()
        X, Y = torch.cat(xs), torch.cat(ys)
        policy.normalizer.update(X[-envs * env.cfg.max_episode_steps:])
        for _ in range(epochs):
            idx = torch.randint(0, len(X), (1024,))
            loss = (policy(X[idx]) - Y[idx]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        rate = sum(succ) / max(len(succ), 1)
        print(f"iter {it}: {'expert' if it == 0 else 'learner'} success {rate:.3f} over {len(succ)} finished "
              f"episodes, {len(X)} samples, loss {loss.item():.4f}", flush=True)
    return policy.eval()


def evaluate_in_robolearn(artifact: Path, episodes: int, seed: int = 12345) -> dict[str, float]:
    """The artifact through the robot-side runtime in robolearn's push-t: success rate and mean max coverage
    (the figures `--external gym-pusht` reports), one episode per env, all 300 steps unless it succeeds."""
    from robolearn.export.runtime import PolicyRuntime

    rt = PolicyRuntime.load(artifact)
    env = registry.make("push-t", num_envs=episodes, seed=seed)
    obs = env.reset()
    done = torch.zeros(episodes, dtype=torch.bool)
    success = torch.zeros(episodes)
    max_cov = torch.zeros(episodes)
    for _ in range(env.cfg.max_episode_steps):
        res = env.step(torch.from_numpy(rt.act(obs["policy"].numpy())))
        obs = res.obs
        if "episode" in res.info:
            ids = res.info["episode"]["env_ids"]
            new = ~done[ids]
            success[ids[new]] = res.info["episode"]["success"][new]
            max_cov[ids[new]] = res.info["episode"]["max_coverage"][new]
            done[ids] = True
        if done.all():
            break
    return {"success_rate": float(success.mean()), "mean_max_coverage": float(max_cov.mean())}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--envs", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=400, help="gradient steps (batch 1024) after each round")
    p.add_argument("--eval-episodes", type=int, default=50, help="robolearn push-t episodes for the artifact")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    policy = dagger(args.iters, args.envs, args.seed, args.epochs)
    print(f"trained in {time.time() - t0:.0f} s")
    spec = registry.env_class("push-t").make_spec(registry.cfg_class("push-t")())
    export_policy(policy, spec, Path(args.out), source={"kind": "dagger-pusht-expert", "seed": args.seed,
                                                         "iters": args.iters, "envs": args.envs,
                                                         "epochs": args.epochs})
    print(f"artifact {args.out}")
    print(f"robolearn push-t, {args.eval_episodes} episodes through the runtime:",
          evaluate_in_robolearn(Path(args.out), args.eval_episodes))


if __name__ == "__main__":
    main()
