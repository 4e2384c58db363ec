"""The imitation training loop: dataset windows -> policy.forward -> AdamW, with evaluation rollouts and checkpoints.

A run directory holds `config.yaml` (the resolved config), `checkpoints/step_NNNNNN.safetensors` (policy with its
EMA copy, optimizer, learning-rate schedule, sampler position, evaluation-env and RNG state; the policy's description
and the run config in the JSON metadata; no pickle), `tb/` (TensorBoard) and `summary.json`. Checkpoint files are
never overwritten by a failed run: a non-finite loss stops training with the step and the batch's samples named,
before anything else is written.

Exact resume: `robolearn train act|diffusion --resume RUN_DIR` continues a killed run from its latest checkpoint, and
on the CPU with the same seed trains bit-identical weights and losses to a run that was never stopped. Everything
random is either seeded state that the checkpoint carries (torch/NumPy/Python RNGs, which also drive augmentation,
dropout, CVAE and diffusion noise; the evaluation env's generator) or a pure function of the seed and position
(`EpochBatches`: epoch e's sample order is seeded by (seed, e), the position is saved). Evaluation rollouts run under
`preserved_rng()`, so a run with periodic evaluation trains the same weights as one without.

Several GPUs (or CPU processes): `torchrun --nproc_per_node N -m robolearn.cli.main train act ...` runs data-parallel
DDP (NCCL on CUDA, Gloo on CPU); each rank samples its own batches (seed + rank), gradients are averaged, and only
rank 0 evaluates, logs and writes checkpoints (the other ranks save their own RNG state and sampler position under
`checkpoints/rank<r>/`, which `--resume` under the same torchrun command reads back). Every rank builds the same
initial weights from `seed`, then draws its augmentation, dropout and noise from `seed + 1000 * rank`.
`batch_size` is per rank.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from robolearn.core.config import load_yaml, parse_sets, save_yaml, to_dict
from robolearn.core.errors import CheckpointError, ConfigError, RobolearnError
from robolearn.core.logging import RunLogger, new_run_dir
from robolearn.core.seeding import preserved_rng, rng_state, seed_everything, set_rng_state
from robolearn.data.store import DatasetError, EpisodeStore
from robolearn.policies.act import ACTConfig
from robolearn.policies.common import (
    PolicyInputError,
    check_task,
    env_obs,
    is_image,
    policy_class,
    policy_from_description,
    resolve_features,
)
from robolearn.policies.diffusion import DiffusionConfig


class NonFiniteLossError(RobolearnError):
    """The loss became NaN or inf; the message names the step and the samples of the batch."""


@dataclass(kw_only=True)
class ImitationRunCfg:
    """An imitation run: which policy, dataset and (optional) task, for how long, and where to write."""

    dataset: str
    """Episode store (zarr) with the demonstrations."""
    task: str | None = None
    """Registered task for evaluation rollouts (and shape checks); None: no evaluation."""
    env_set: tuple[str, ...] = ()
    """Task config overrides for evaluation, FIELD=VALUE (YAML value), e.g. init_max_angle_deg=10."""
    seed: int = 0
    steps: int = 5000
    """Optimizer steps."""
    batch_size: int = 64
    grad_clip: float = 10.0
    """Clip the gradient norm at this value (0: off)."""
    lr_schedule: str = "constant"
    """Learning rate over the run: constant, or cosine (from the policy's lr down to 0 at the last step)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0 over this many steps (before either schedule)."""
    device: str = "cpu"
    """Torch device for the policy (and the evaluation envs)."""
    amp: bool = False
    """Mixed precision: run the forward pass under bfloat16 autocast (CUDA or CPU; no loss scaling needed)."""
    threads: int = 0
    """CPU threads for torch (0: torch's default; 1 is often fastest for small policies on a busy machine)."""
    num_workers: int = 0
    """DataLoader workers (0: load in the training process; the dataset is cached in memory when it fits)."""
    sample_block: int = 0
    """Training order: 1 uniform; N > 1 blocks of N consecutive windows, batch_size blocks shuffled together, so a
    store too large to cache decodes each chunk once per block instead of once per window (data/windows.py);
    0: 1 when the dataset is cached in memory, else the store's chunk length. Fixed for a run (kept on resume)."""
    log_every: int = 50
    checkpoint_every: int = 1000
    """Save a checkpoint every this many steps (and at the end)."""
    eval_every: int = 0
    """Evaluate every this many steps (0: only at the end); needs a task."""
    eval_episodes: int = 50
    """Episodes per evaluation, run in parallel in the batched env."""
    runs_root: str = "runs"
    name: str = ""
    """Run name (default: <dataset>-<policy>)."""
    tensorboard: bool = True
    init: str | None = None
    """Start from the policy weights of this checkpoint (same policy kind and features)."""


@dataclass(kw_only=True)
class ACTRunCfg(ImitationRunCfg):
    """An ACT run."""

    policy: ACTConfig = field(default_factory=ACTConfig)


@dataclass(kw_only=True)
class DiffusionRunCfg(ImitationRunCfg):
    """A Diffusion Policy run."""

    policy: DiffusionConfig = field(default_factory=DiffusionConfig)


RUN_CFGS: dict[str, type[ImitationRunCfg]] = {"act": ACTRunCfg, "diffusion": DiffusionRunCfg}


def kind_of(cfg: ImitationRunCfg) -> str:
    """The policy kind of a run config."""
    return next(k for k, c in RUN_CFGS.items() if isinstance(cfg, c))


def lr_factor(schedule: str, warmup: int, total: int) -> Any:
    """The learning-rate multiplier of optimizer step s+1 as a function of s (steps done), for `LambdaLR`.

    Warm-up: step k <= warmup (1-based) runs at k / warmup of the lr; then constant, or cosine from 1 down to 0 at
    step `total` + 1 (so the last step still moves).
    """
    if schedule not in ("constant", "cosine"):
        raise ConfigError(f"lr_schedule must be constant or cosine, got '{schedule}'")
    if warmup < 0:
        raise ConfigError(f"warmup_steps must be >= 0, got {warmup}")

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup  # linear warm-up
        if schedule == "constant":
            return 1.0
        progress = (s - warmup) / max(1, total - warmup)  # 0 at the first step after warm-up, < 1 at the last
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # cosine from 1 towards 0

    return factor


def make_eval_env(cfg: ImitationRunCfg, num_envs: int, seed: int) -> Any:
    """The task's batched env with the run's `env_set` overrides."""
    from robolearn.envs import registry

    env_cfg = parse_sets(registry.cfg_class(cfg.task)(), cfg.env_set, source=f"env_set (task '{cfg.task}')")
    return registry.make(cfg.task, env_cfg, seed=seed, num_envs=num_envs, device=cfg.device)


@torch.no_grad()
def evaluate(policy: Any, env: Any) -> dict[str, float]:
    """One episode per env copy with `policy.select_action` (actions clamped to the task's limits)."""
    from robolearn.eval.rollout import evaluate_policy

    was_training = policy.training
    policy.eval()
    policy.reset()
    low, high = env.spec.action.low, env.spec.action.high
    try:
        with preserved_rng():  # sampling noise of the rollouts must not shift the training streams
            return evaluate_policy(env, lambda obs: policy.select_action(obs).clamp(low, high))
    finally:
        policy.reset()
        policy.train(was_training)


def load_policy_checkpoint(path: str | Path, kind: str | None = None, device: str = "cpu") -> tuple[Any, dict]:
    """The policy of an imitation checkpoint (eval mode) and its metadata; `kind` rejects another policy type."""
    state, meta = load_checkpoint(path, map_location=device)
    if "policy" not in meta or "policy" not in state:
        raise CheckpointError(f"{path}: not an imitation-policy checkpoint (no policy description)")
    policy = policy_from_description(meta["policy"], state["policy"], expect_kind=kind, where=str(path))
    return policy.to(device).eval(), meta


def find_imitation_checkpoint(run_dir: str | Path, checkpoint: str | Path | None = None
                              ) -> tuple[Path, dict[str, Any]] | None:
    """The (latest, unless named) checkpoint of an imitation run and its metadata; None for other runs."""
    from robolearn.core.checkpoint import latest_checkpoint

    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(Path(run_dir) / "checkpoints")
    if ckpt is None or (not checkpoint and not ckpt.name.startswith("step_")):
        return None
    _, meta = load_checkpoint(ckpt)
    return (ckpt, meta) if meta.get("kind") in RUN_CFGS else None


def run_cfg_from_meta(meta: dict[str, Any], where: str) -> ImitationRunCfg:
    """The run config saved in an imitation checkpoint's metadata."""
    from robolearn.core.config import from_dict

    return from_dict(RUN_CFGS[meta["kind"]], meta["config"], source=where)


class ImitationTrainer:
    """Builds dataset windows, policy, optimizer (and eval env) from a run config and runs the loop."""

    def __init__(self, cfg: ImitationRunCfg, run_dir: Path | None = None, quiet: bool = False,
                 resuming: bool = False) -> None:
        from robolearn.data.windows import EpochBatches, WindowDataset

        self.cfg, self.kind, self.quiet = cfg, kind_of(cfg), quiet
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.rank, self.world, self.device = _distributed_setup(cfg.device)
        seed_everything(cfg.seed)
        store = EpisodeStore(cfg.dataset)
        if store.num_episodes == 0:
            raise DatasetError(store.name, "has no episodes to train on")
        pcfg = cfg.policy  # type: ignore[attr-defined]
        features = resolve_features(store, pcfg.state_keys, pcfg.image_keys)
        self.env = None
        if cfg.task is not None:
            env = make_eval_env(cfg, cfg.eval_episodes if self.rank == 0 else 1, cfg.seed + 10_000)
            check_task(features, env.spec.obs_dims, env.spec.action.dim, cfg.task)
            obs = env.reset()
            for key in features:
                value = env_obs(obs, key) if key != "action" else None
                if key != "action" and value is None:
                    raise PolicyInputError(f"key '{key}': task '{cfg.task}' observations do not include it "
                                           f"(groups: {', '.join(obs)}), so evaluation rollouts cannot run; "
                                           "train without --task or on a task that renders it (--set cameras=[...])")
                if is_image(key) and tuple(value.shape[1:]) != tuple(features[key]):
                    raise PolicyInputError(f"key '{key}': dataset images are {tuple(features[key])}, task "
                                           f"'{cfg.task}' renders {tuple(value.shape[1:])} (--set image_size=[H,W])")
            self.env = env if self.rank == 0 else None
        stats = _dataset_stats(store, list(features))
        cls = policy_class(self.kind)
        self.policy = cls(pcfg, features, stats).to(self.device)
        if cfg.init:
            init, _ = load_policy_checkpoint(cfg.init, kind=self.kind)
            if init.features != self.policy.features:
                raise CheckpointError(f"{cfg.init}: policy features {init.features} differ from the dataset's "
                                      f"{self.policy.features}")
            self.policy.load_state_dict(init.state_dict())
        if self.world > 1:  # same initial weights on every rank (above); from here each rank its own randomness
            seed_everything(cfg.seed + 1000 * self.rank)
        self.dataset = WindowDataset(store, self.policy.deltas)
        self.sampler = EpochBatches(len(self.dataset), cfg.batch_size, seed=cfg.seed + self.rank,
                                    drop_last=len(self.dataset) >= cfg.batch_size,
                                    block=cfg.sample_block or self.dataset.suggested_block(),
                                    lanes=cfg.num_workers)
        # the loader's own generator seeds its workers, so starting a loader never draws from the global RNG
        gen = torch.Generator().manual_seed(cfg.seed + self.rank)
        self.loader = self.dataset.loader(cfg.batch_size, num_workers=cfg.num_workers, generator=gen,
                                          batches=self.sampler)
        wd = getattr(pcfg, "weight_decay", 0.0)
        self.optimizer = torch.optim.AdamW(self.policy.param_groups(), weight_decay=wd)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(cfg.lr_schedule, cfg.warmup_steps, cfg.steps))
        self.step = 0
        self.elapsed_s = 0.0
        self.history: list[dict[str, float]] = []
        if run_dir is None and self.rank == 0:
            name = cfg.name or f"{Path(cfg.dataset).stem}-{self.kind}"
            run_dir = new_run_dir(Path(cfg.runs_root), name)
        if self.world > 1:  # every rank learns rank 0's run directory
            import torch.distributed as dist

            shared = [str(run_dir) if run_dir is not None else None]
            dist.broadcast_object_list(shared, src=0)
            run_dir = Path(shared[0])
        self.run_dir = Path(run_dir)
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not resuming:
                save_yaml(cfg, self.run_dir / "config.yaml")

    # ---- checkpoints and resume --------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        """checkpoints/ (rank 0: the whole state) or checkpoints/rank<r>/ (another rank's RNG and sampler state)."""
        base = self.run_dir / "checkpoints"
        return base if self.rank == 0 else base / f"rank{self.rank}"

    def save(self) -> Path:
        """Everything an exact resume needs at the current step; config and policy description in the metadata.

        Rank 0 writes policy (with the EMA copy), optimizer, LR schedule, sampler, eval env and RNG state; the other
        ranks only their RNG state and sampler position.
        """
        path = self.checkpoint_dir / f"step_{self.step:06d}.safetensors"
        state: dict[str, Any] = {"rng": rng_state(), "sampler": self.sampler.state_dict()}
        meta: dict[str, Any] = {"kind": self.kind, "step": self.step, "rank": self.rank}
        if self.rank == 0:
            state.update(policy=self.policy.state_dict(), optimizer=self.optimizer.state_dict(),
                         scheduler=self.scheduler.state_dict())
            if self.env is not None:
                state["eval_env"] = self.env.state_dict()
            meta.update(policy=self.policy.describe(), dataset=self.cfg.dataset, task=self.cfg.task,
                        config=to_dict(self.cfg), history=self.history[-100:], elapsed_s=self.elapsed_s)
        save_checkpoint(path, state, meta)
        return path

    @classmethod
    def resume(cls, run_dir: str | Path, kind: str | None = None, quiet: bool = False,
               expect: ImitationRunCfg | None = None) -> ImitationTrainer:
        """Re-open an imitation run directory at its latest checkpoint (the run config comes from the checkpoint).

        `expect`: the config of the command line that asks to resume; a field that differs from the run's is an
        error (an empty `dataset` there means "the run's").
        """
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CheckpointError(f"{run_dir}: no such run directory")
        path = latest_checkpoint(run_dir / "checkpoints")
        if path is None:
            raise CheckpointError(f"{run_dir}: no checkpoint to resume from in {run_dir / 'checkpoints'} (the run "
                                  "stopped before its first checkpoint: start it again, or save more often with "
                                  "--checkpoint-every)")
        try:
            state, meta = load_checkpoint(path)
        except CheckpointError as e:
            raise CheckpointError(_with_earlier(str(e), path)) from None
        if meta.get("kind") not in RUN_CFGS or "config" not in meta:
            raise CheckpointError(f"{path}: not an imitation-run checkpoint (kind: {meta.get('kind')!r})")
        if kind is not None and meta["kind"] != kind:
            raise CheckpointError(f"{path}: holds a '{meta['kind']}' run, not '{kind}'")
        cfg = run_cfg_from_meta(meta, str(path))
        if expect is not None:
            given = to_dict(expect)
            if not given.get("dataset"):
                given["dataset"] = cfg.dataset
            diff = _differences(given, to_dict(cfg))
            if diff:
                raise ConfigError(f"{run_dir}: --resume keeps the run's config, but the command line differs: "
                                  + "; ".join(diff[:5]) + (" ..." if len(diff) > 5 else ""))
        trainer = cls(cfg, run_dir=run_dir, quiet=quiet, resuming=True)
        trainer.load(path, state, meta)
        return trainer

    def load(self, path: Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Restore what `save` wrote (rank 0's file; another rank then reads its own RNG and sampler file)."""
        missing = [k for k in ("policy", "optimizer", "scheduler", "sampler", "rng") if k not in state]
        if missing:
            raise CheckpointError(f"{path}: has no {', '.join(missing)} state (written by a robolearn without exact "
                                  "resume; start a new run from its weights with --init)")
        step = int(meta["step"])
        if step >= self.cfg.steps:
            raise CheckpointError(f"{path}: the run is complete (step {step} of {self.cfg.steps}); nothing to resume")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.env is not None and "eval_env" in state:
            self.env.load_state_dict(state["eval_env"])
        if self.rank != 0:  # this rank's own random streams and batch order
            own = self.checkpoint_dir / path.name
            if not own.is_file():
                raise CheckpointError(f"{own}: missing (rank {self.rank}'s state for {path.name}); resume with the "
                                      "torchrun command that wrote the run")
            state, _ = load_checkpoint(own)
        try:
            self.sampler.load_state_dict(state["sampler"])
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: {e}") from None
        set_rng_state(state["rng"])
        self.step = step
        self.elapsed_s = float(meta.get("elapsed_s", 0.0))
        self.history = list(meta.get("history", []))

    def evaluate(self) -> dict[str, float]:
        """Evaluation rollouts in the task's batched env (success rate, return, task metrics); RNGs untouched."""
        if self.env is None:
            return {}
        return evaluate(self.policy, self.env)

    def batches(self) -> Any:
        """Endless training batches from the sampler's position (a new seeded order every epoch)."""
        while True:
            for batch in self.loader:  # the rest of the current epoch
                self.sampler.advance()  # counted when used, not when a worker fetched it
                yield batch

    def train(self) -> dict[str, Any]:
        """Run `steps` optimizer steps; returns the summary (also written to summary.json)."""
        cfg, policy = self.cfg, self.policy
        policy.train()
        model: Any = policy
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(policy, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None)
        lead = self.rank == 0
        start = session_start = time.time()
        first_step = self.step
        last_eval: dict[str, float] = {}
        samples = 0
        with RunLogger(self.run_dir if lead else self.run_dir / f".rank{self.rank}", total=cfg.steps, unit="step",
                       desc=f"{Path(cfg.dataset).name} {self.kind}", tensorboard=cfg.tensorboard and lead,
                       console=not self.quiet and lead) as log:
            log.update(self.step)
            batches = self.batches()
            while self.step < cfg.steps:
                batch = next(batches)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                    loss, logs = model(batch)
                loss = loss.float()
                if not torch.isfinite(loss):
                    idx = batch["index"].tolist()
                    eps = sorted(set(batch["episode_index"].tolist()))
                    value = float(loss.detach())
                    raise NonFiniteLossError(
                        f"non-finite loss ({value}) at step {self.step + 1}: batch of frames {_short(idx)} "
                        f"from episodes {_short(eps)} of {cfg.dataset}; nothing was saved for this step")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = (torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                             if cfg.grad_clip > 0 else torch.zeros(()))
                self.optimizer.step()
                lr = self.optimizer.param_groups[0]["lr"]  # what this step used
                self.scheduler.step()
                if hasattr(policy, "ema_update"):
                    policy.ema_update()
                self.step += 1
                samples += len(batch["index"])
                log.update(1)
                metrics: dict[str, float] = {}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.time() - session_start
                    metrics = {"loss": float(loss.detach()), **{f"loss/{k}": v for k, v in logs.items()},
                               "grad_norm": float(grad_norm), "time/samples_per_s": samples / max(elapsed, 1e-9)}
                if self.env is not None and ((cfg.eval_every and self.step % cfg.eval_every == 0)
                                             or self.step == cfg.steps):
                    last_eval = {f"eval/{k}": v for k, v in self.evaluate().items()}
                    metrics.update(last_eval)
                if metrics:
                    metrics["lr"] = lr
                    log.log(self.step, metrics, main=("loss", "eval/success"))
                    self.history.append({"step": self.step, **metrics})
                if self.step % cfg.checkpoint_every == 0 and self.step != cfg.steps:
                    self.elapsed_s += time.time() - start
                    start = time.time()
                    self.save()
        if not lead:
            import shutil

            shutil.rmtree(self.run_dir / f".rank{self.rank}", ignore_errors=True)
            return {}  # rank 0 reports
        self.elapsed_s += time.time() - start
        ckpt = self.save()
        summary = {"run_dir": str(self.run_dir), "checkpoint": str(ckpt), "policy": self.kind, "steps": self.step,
                   "resumed_from": first_step, "samples": samples, "elapsed_s": round(self.elapsed_s, 3),
                   "final_loss": self.history[-1].get("loss") if self.history else None, **last_eval}
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def _distributed_setup(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment (see `robolearn.learners.distributed.setup`)."""
    from robolearn.learners.distributed import setup

    return setup(device)


def _dataset_stats(store: EpisodeStore, keys: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """The dataset's stored statistics for `keys`, or computed now (not stored) when absent or stale."""
    from robolearn.data.stats import compute_stats, load_stats

    try:
        stats = load_stats(store)
        if all(k in stats for k in keys):
            return stats
    except DatasetError:
        pass
    return compute_stats(store, keys)


def is_imitation_run(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds an imitation run (its config.yaml names a dataset and a policy, no RL learner)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return False
    data = load_yaml(path)
    return isinstance(data, dict) and "dataset" in data and "policy" in data and "learner" not in data


def _differences(given: dict[str, Any], saved: dict[str, Any], prefix: str = "") -> list[str]:
    """'field: X here, Y in the run' for every leaf where two config dicts differ."""
    out = []
    for key in sorted(set(given) | set(saved)):
        a, b = given.get(key), saved.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif (list(a) if isinstance(a, tuple | list) else a) != (list(b) if isinstance(b, tuple | list) else b):
            out.append(f"{prefix}{key}: {a!r} here, {b!r} in the run")
    return out


def _with_earlier(message: str, bad: Path) -> str:
    """A damaged checkpoint's error, plus the earlier checkpoint a resume could use once it is moved away."""
    older = sorted(p for p in bad.parent.glob("step_*.safetensors") if p.name < bad.name)
    if not older:
        return message + "; no earlier checkpoint to resume from"
    return message + f"; the earlier checkpoint {older[-1].name} is there: move {bad.name} away to resume from it"


def _short(values: list[int], n: int = 8) -> str:
    return "[" + ", ".join(map(str, values[:n])) + (", ..." if len(values) > n else "") + "]"


__all__ = ["ACTRunCfg", "DiffusionRunCfg", "ImitationRunCfg", "ImitationTrainer", "NonFiniteLossError",
           "PolicyInputError", "evaluate", "load_policy_checkpoint"]
