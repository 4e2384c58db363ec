"""The training loop every RL learner shares: run directory, config, logging, checkpoints, resume, stop rules.

A run directory holds `config.yaml` (the resolved config), `checkpoints/iter_NNNNNN.safetensors`
(learner + env + RNG state, no pickle), `tb/` (TensorBoard) and `summary.json`.

Several processes (`torchrun --nproc-per-node N -m robolearn.cli.main train --config ...`): `env.num_envs` is the
total, split evenly over the ranks; rank r steps its own envs seeded `seed + 1000 r`, the learners average gradients
over ranks (see `robolearn.learners.distributed`), and rank 0 evaluates, logs and writes `checkpoints/`. Every other
rank writes its own env and RNG state to `checkpoints/rank<r>/` (parameters are the same on every rank), so that
`--resume` under the same torchrun command continues each rank where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robolearn.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from robolearn.core.config import from_dict, load_yaml, parse_sets, save_yaml
from robolearn.core.env import BatchedEnv, EnvCfg
from robolearn.core.errors import CheckpointError, ConfigError
from robolearn.core.logging import RunLogger, new_run_dir
from robolearn.core.seeding import rng_state, seed_everything, set_rng_state
from robolearn.envs import registry
from robolearn.learners import distributed, learner_classes
from robolearn.networks import MLPPolicy

REPLAY_KEY = "buffer"
"""The learner-state key of a replay buffer; `Trainer.save` stores it apart from the checkpoint (newest only)."""


@dataclass(kw_only=True)
class RunCfg:
    """A training run: which task and learner, for how long, and where to write (env/algo added per task)."""

    task: str
    """Registered task name (see `robolearn tasks`)."""
    learner: str
    """Learner name: ppo, td3, shac or hinf."""
    seed: int = 0
    """Seed of every random stream (env, networks, sampling)."""
    iterations: int = 200
    """Learner iterations (one iteration = one rollout + update for PPO, one parallel env step for TD3)."""
    max_env_steps: int | None = None
    """Stop after this many environment transitions (None: no limit)."""
    time_budget_s: float | None = None
    """Stop after this many wall seconds (None: no limit)."""
    checkpoint_every: int = 100
    """Save a checkpoint every this many iterations (and at the end)."""
    eval_every: int = 0
    """Evaluate the deterministic policy every this many iterations (0: never during training)."""
    eval_episodes: int = 1000
    """Episodes per evaluation (run in parallel)."""
    eval_set: list[str] = field(default_factory=list)
    """Task config overrides (`FIELD=VALUE`, as `--set` takes them) for evaluations only, e.g.
    ["init_reared_fraction=0"] to judge from the task's own starts what training eased with helper starts. The
    periodic evaluation and `robolearn eval RUN` (before its own `--set`) apply them."""
    stop_success: float | None = None
    """Stop as soon as an evaluation reaches this success rate (e.g. 0.95)."""
    stop_below: dict[str, float] = field(default_factory=dict)
    """Stop as soon as an evaluation has every named metric at or below its bound, e.g. {"tracking_error": 0.2,
    "terminated": 0.05} for a walking policy (names as the evaluation reports them, without "eval/"). With
    `stop_success` too, both must hold."""
    runs_root: str = "runs"
    """Where new run directories are created."""
    name: str = ""
    """Run name (default: <task>-<learner>)."""
    env: Any = None
    """Task configuration (the task's config dataclass)."""
    algo: Any = None
    """Learner configuration (the learner's config dataclass)."""
    tensorboard: bool = True
    """Write TensorBoard event files."""
    threads: int | None = None
    """Torch CPU threads (None: torch's default). 1 on a small CPU with MuJoCo tasks: a second torch thread
    fights MuJoCo's thread pool (~10x slower on 2 cores)."""
    extra: dict[str, str] = field(default_factory=dict)
    """Free-form notes saved with the run (e.g. operator, hardware)."""
    init_from: str = ""
    """Warm start: a run directory (its latest checkpoint) or a checkpoint file of another run on the same task.
    Its actor (weights and observation normalizer) starts this run; PPO and H∞ also take its action std and,
    when the shapes match, its critic. Optimizers, counters, curricula and the env start fresh: e.g. fine-tune
    a walking policy against a disturber. Ignored by `--resume`, which continues from this run's own state."""


def criterion_met(cfg: RunCfg, evaluation: dict[str, float]) -> bool:
    """Whether an evaluation ({"eval/<metric>": value}) meets the run's stop criterion (False when it has none)."""
    if cfg.stop_success is None and not cfg.stop_below:
        return False
    if cfg.stop_success is not None and evaluation.get("eval/success", 0.0) < cfg.stop_success:
        return False
    for name, bound in cfg.stop_below.items():
        if f"eval/{name}" not in evaluation:
            have = sorted(k.removeprefix("eval/") for k in evaluation)
            raise ConfigError(f"stop_below: the evaluation of {cfg.task} has no metric '{name}' (it has {have})")
        if not evaluation[f"eval/{name}"] <= bound:  # NaN never meets a bound
            return False
    return True


def eval_env_cfg(cfg: RunCfg) -> EnvCfg:
    """The run's task config as its evaluations use it (`eval_set` applied)."""
    return parse_sets(cfg.env, cfg.eval_set, source=f"eval_set (task '{cfg.task}')")


def run_cfg_class(task: str, learner: str) -> type[RunCfg]:
    """RunCfg with `env` and `algo` typed as the task's and learner's config dataclasses."""
    env_cls = registry.cfg_class(task)
    _, algo_cls = learner_classes(learner)
    return dataclasses.make_dataclass(
        "TrainCfg",
        [("env", env_cls, field(default_factory=env_cls)), ("algo", algo_cls, field(default_factory=algo_cls))],
        bases=(RunCfg,),
        kw_only=True,
    )


def load_run_cfg(data: dict, source: str) -> RunCfg:
    """Strictly build a typed run config from a dict (a YAML preset or a saved config.yaml)."""
    for key in ("task", "learner"):
        if key not in data:
            raise ConfigError(f"{source}: missing key '{key}'")
    return from_dict(run_cfg_class(data["task"], data["learner"]), data, source=source)


def load_run_cfg_file(path: str | Path) -> RunCfg:
    """`load_run_cfg` of a YAML file."""
    return load_run_cfg(load_yaml(path), str(path))


def warm_start(learner: Any, source: str | Path, task: str) -> list[str]:
    """Load `source`'s (run directory or checkpoint) actor, and what else the learner takes, into `learner`.

    Returns the names of the loaded parts. Learners with a `warm_start(state) -> list[str]` method choose what
    they take from the source learner's state; the others take the actor.
    """
    path = Path(source)
    ckpt = latest_checkpoint(path / "checkpoints") if path.is_dir() else path
    if ckpt is None or not ckpt.is_file():
        raise ConfigError(f"init_from: {source} is neither a checkpoint file nor a run directory with checkpoints")
    state, meta = load_checkpoint(ckpt)
    if meta.get("task") != task:
        raise ConfigError(f"init_from: {ckpt} was trained on '{meta.get('task')}', this run is '{task}'")
    try:
        if hasattr(learner, "warm_start"):
            return learner.warm_start(state["learner"])
        learner.policy().load_state_dict(state["learner"]["actor"])
        return ["actor"]
    except (KeyError, RuntimeError) as e:  # a missing part or a size mismatch, named on one line
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]
        raise ConfigError(f"init_from: {ckpt} does not fit this run's {type(learner).__name__}: {detail}") from None


class Trainer:
    """Builds env + learner from a RunCfg and runs the loop; `resume` continues a killed run exactly."""

    def __init__(self, cfg: RunCfg, run_dir: Path | None = None, quiet: bool = False, resuming: bool = False) -> None:
        self.cfg = cfg
        if cfg.threads is not None:
            if cfg.threads < 1:
                raise ConfigError(f"threads must be >= 1, got {cfg.threads}")
            torch.set_num_threads(cfg.threads)
        self.rank, self.world, device = distributed.setup(cfg.env.device)
        env_cfg: EnvCfg = cfg.env
        if self.world > 1:  # this rank's share of the environments, on its own device
            if cfg.env.num_envs % self.world:
                raise ConfigError(f"env.num_envs = {cfg.env.num_envs} does not split evenly over {self.world} ranks")
            env_cfg = dataclasses.replace(cfg.env, num_envs=cfg.env.num_envs // self.world, device=str(device))
        seed_everything(cfg.seed)  # identical networks on every rank (PPO also broadcasts rank 0's)
        self.env: BatchedEnv = registry.make(cfg.task, env_cfg, seed=cfg.seed + 1000 * self.rank)
        self.eval_env_cfg = eval_env_cfg(cfg)  # a bad eval_set key fails here, not at the first evaluation
        learner_cls, _ = learner_classes(cfg.learner)
        if self.world > 1 and not getattr(learner_cls, "supports_ddp", False):
            raise ConfigError(f"learner '{cfg.learner}' does not average gradients over ranks; run it without "
                              "torchrun (ppo and hinf train data-parallel)")
        self.learner = learner_cls(self.env, cfg.algo)
        if self.world > 1:
            seed_everything(cfg.seed + 1000 * self.rank)  # each rank its own action noise and minibatches
        self.iteration = 0
        self.elapsed_s = 0.0
        self.warm_started: list[str] = []
        self.history: list[dict[str, float]] = []
        self.quiet = quiet
        if run_dir is None and self.rank == 0:
            run_dir = new_run_dir(Path(cfg.runs_root), cfg.name or f"{cfg.task}-{cfg.learner}")
        if self.world > 1:  # every rank learns rank 0's run directory
            import torch.distributed as dist

            shared = [str(run_dir) if run_dir is not None else None]
            dist.broadcast_object_list(shared, src=0)
            run_dir = Path(shared[0])
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.init_from and not resuming:
            self.warm_started = warm_start(self.learner, cfg.init_from, cfg.task)  # same file on every rank
            if not quiet and self.rank == 0:
                print(f"warm start from {cfg.init_from}: {', '.join(self.warm_started)}")
        if not resuming and self.rank == 0:
            save_yaml(cfg, self.run_dir / "config.yaml")

    @classmethod
    def resume(cls, run_dir: str | Path, quiet: bool = False) -> Trainer:
        """Re-open a run directory at its latest checkpoint."""
        run_dir = Path(run_dir)
        cfg = load_run_cfg_file(run_dir / "config.yaml")
        trainer = cls(cfg, run_dir=run_dir, quiet=quiet, resuming=True)
        ckpt = latest_checkpoint(trainer.checkpoint_dir)
        if ckpt is not None:
            trainer.load(ckpt)
        return trainer

    # ---- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        """checkpoints/ (rank 0) or checkpoints/rank<r>/ (the other ranks' env and RNG state under torchrun)."""
        base = self.run_dir / "checkpoints"
        return base if self.rank == 0 else base / f"rank{self.rank}"

    def save(self) -> Path:
        """Write learner, env and RNG state for the current iteration.

        A replay buffer (TD3's `buffer`, hundreds of MB) goes to `checkpoints/replay/` and only the newest is
        kept: every checkpoint stays loadable for evaluation, export and warm starts, and the latest one resumes
        exactly. The new buffer is written before its checkpoint and the old one deleted after, so a kill at
        any point leaves the latest checkpoint with its buffer.
        """
        path = self.checkpoint_dir / f"iter_{self.iteration:06d}.safetensors"
        learner_state = self.learner.state_dict()
        replay = learner_state.pop(REPLAY_KEY, None)
        replay_dir = self.checkpoint_dir / "replay"
        if replay is not None:
            replay_dir.mkdir(parents=True, exist_ok=True)
            save_checkpoint(replay_dir / path.name, {REPLAY_KEY: replay}, {"iteration": self.iteration})
        state = {
            "learner": learner_state,
            "env": self.env.state_dict(),
            "rng": rng_state(),
            "env_reward_scales": dict(self.env.cfg.reward_scales),
        }
        meta = {
            "iteration": self.iteration,
            "elapsed_s": self.elapsed_s,
            "task": self.cfg.task,
            "learner": self.cfg.learner,
            "history": self.history,
            "policy": self.learner.policy().describe(),
            **({"replay": f"replay/{path.name}"} if replay is not None else {}),
        }
        save_checkpoint(path, state, meta)
        if replay is not None:
            for old in replay_dir.glob("iter_*.safetensors"):
                if old.name != path.name:
                    old.unlink()
        return path

    def load(self, path: Path) -> None:
        """Restore a checkpoint written by `save`."""
        state, meta = load_checkpoint(path)
        if meta.get("task") != self.cfg.task or meta.get("learner") != self.cfg.learner:
            raise ConfigError(f"{path}: checkpoint is for {meta.get('task')}/{meta.get('learner')}, "
                              f"config says {self.cfg.task}/{self.cfg.learner}")
        if "replay" in meta:  # the buffer sits beside the newest checkpoint only (see `save`)
            replay_path = path.parent / meta["replay"]
            if not replay_path.is_file():
                raise CheckpointError(f"{path}: its replay buffer {replay_path} is gone (only the newest checkpoint "
                                      "keeps one); resume from the latest checkpoint, or start a new run from this "
                                      "one's weights with --init-from")
            state["learner"][REPLAY_KEY] = load_checkpoint(replay_path)[0][REPLAY_KEY]
        self.learner.load_state_dict(state["learner"])
        self.env.load_state_dict(state["env"])
        self.env.cfg.reward_scales.update(state["env_reward_scales"])
        set_rng_state(state["rng"])
        self.iteration = int(meta["iteration"])
        self.elapsed_s = float(meta["elapsed_s"])
        self.history = list(meta["history"])

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Deterministic policy over `eval_episodes` random starts (separate env, own seed)."""
        from robolearn.eval.rollout import evaluate_policy

        env_cfg: EnvCfg = dataclasses.replace(self.eval_env_cfg, num_envs=self.cfg.eval_episodes)
        env = registry.make(self.cfg.task, env_cfg, seed=self.cfg.seed + 10_000)
        policy = self.learner.policy()
        return evaluate_policy(env, lambda obs: policy(obs["policy"]))

    # ---- loop ----------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Run until iterations, env steps, time budget or the success criterion; returns the summary."""
        cfg = self.cfg
        start = time.time() - self.elapsed_s
        last_eval: dict[str, float] = {}
        stop_reason = "iterations"
        per_iter = self.learner.env_steps_per_iteration * self.world
        lead = self.rank == 0
        log_dir = self.run_dir if lead else self.run_dir / f".rank{self.rank}"
        with RunLogger(log_dir, total=cfg.iterations, unit="it", desc=f"{cfg.task} {cfg.learner}",
                       tensorboard=cfg.tensorboard and lead, console=not self.quiet and lead) as log:
            log.update(self.iteration)
            while self.iteration < cfg.iterations:
                logs = self.learner.train_iteration()
                self.iteration += 1
                self.elapsed_s = time.time() - start
                env_steps = self.iteration * per_iter
                logs["time/elapsed_s"] = self.elapsed_s
                logs["time/env_steps_per_s"] = env_steps / max(self.elapsed_s, 1e-9)
                if lead and cfg.eval_every and self.iteration % cfg.eval_every == 0:
                    last_eval = {f"eval/{k}": v for k, v in self.evaluate().items()}
                    logs.update(last_eval)
                    self.elapsed_s = time.time() - start
                log.log(env_steps, logs, main=("reward", "episode/success", "eval/success"))
                log.update(1)
                self.history.append({"iteration": self.iteration, "env_steps": env_steps,
                                     **{k: v for k, v in logs.items() if _is_scalar(v)}})
                if self.iteration % cfg.checkpoint_every == 0:
                    self.save()
                if last_eval and criterion_met(cfg, last_eval):
                    stop_reason = "success"
                elif cfg.max_env_steps is not None and env_steps >= cfg.max_env_steps:
                    stop_reason = "max_env_steps"
                elif cfg.time_budget_s is not None and self.elapsed_s >= cfg.time_budget_s:
                    stop_reason = "time_budget"
                if distributed.broadcast_flag(stop_reason != "iterations"):  # rank 0 decides for all
                    break
        ckpt = self.save()
        if not lead:
            import shutil

            shutil.rmtree(log_dir, ignore_errors=True)
            return {}  # rank 0 reports
        summary = {
            "run_dir": str(self.run_dir),
            "checkpoint": str(ckpt),
            "iterations": self.iteration,
            "env_steps": self.iteration * per_iter,
            "elapsed_s": round(self.elapsed_s, 3),
            "stop_reason": stop_reason,
            **({"init_from": cfg.init_from} if cfg.init_from else {}),
            **last_eval,
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_policy(run_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[RunCfg, MLPPolicy, Path]:
    """The deployable actor of a run (latest checkpoint unless one is named), in eval mode."""
    run_dir = Path(run_dir)
    cfg = load_run_cfg_file(run_dir / "config.yaml")
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise ConfigError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    state, meta = load_checkpoint(ckpt)
    if "policy" not in meta:
        raise ConfigError(f"{ckpt}: checkpoint has no policy description")
    policy = MLPPolicy.from_description(meta["policy"])
    policy.load_state_dict(state["learner"]["actor"])
    return cfg, policy.eval(), ckpt
