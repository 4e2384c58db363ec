"""Time LeRobot's own ACT / Diffusion Policy training step: run by `robolearn bench act-train --lerobot-python`.

This file runs in *another* interpreter, one with `lerobot` installed (LeRobot pins its own torch, so it lives in
its own venv), and imports nothing from robolearn. It builds the policy with LeRobot's factory (`make_policy`,
`make_pre_post_processors`, the policy's optimizer and scheduler presets) on a LeRobot v3.0 dataset, with the
hyperparameters robolearn's policy was built with, and times what one iteration of `lerobot_train.py` does:
next batch from LeRobotDataset + DataLoader (its sampler), the preprocessor (normalization), forward, backward,
gradient clipping, optimizer and scheduler steps. Prints one JSON object:
`{"samples_per_s": ..., "params": ..., "step_ms": ..., "lerobot_version": ..., "torch": ...}`.

    python lerobot_train_timing.py ROOT '{"policy": "act", "config": {...}, "batch_size": 64, "steps": 30,
                                          "threads": 1, "num_workers": 0}'

Accelerate (which LeRobot's script wraps the loop in) is left out: on a single CPU process or GPU without mixed
precision its autocast is a no-op and its backward is `loss.backward()`.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(root: str, spec: dict) -> dict:
    """Samples/s of LeRobot's training iteration for `spec["policy"]` ("act" or "diffusion")."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local dataset, no pretrained weights: never reach for the Hub
    import lerobot
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.datasets.sampler import EpisodeAwareSampler
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = spec.get("device", "cpu")
    if spec["policy"] == "act":
        from lerobot.policies.act.configuration_act import ACTConfig as Config
    else:
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig as Config
    cfg = Config(device=device, push_to_hub=False, **spec["config"])
    meta = LeRobotDatasetMetadata("local/robolearn-bench", root=root)
    torch.manual_seed(0)
    policy = make_policy(cfg, ds_meta=meta)
    pre, _ = make_pre_post_processors(policy_cfg=cfg, dataset_stats=meta.stats)
    ds = LeRobotDataset("local/robolearn-bench", root=root, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    sampler = None
    if hasattr(cfg, "drop_n_last_frames"):  # as lerobot_train.py: diffusion samples through its episode sampler
        sampler = EpisodeAwareSampler(meta.episodes["dataset_from_index"], meta.episodes["dataset_to_index"],
                                      drop_n_last_frames=cfg.drop_n_last_frames, shuffle=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=spec["batch_size"], shuffle=sampler is None,
                                         sampler=sampler, num_workers=spec.get("num_workers", 0),
                                         pin_memory=device != "cpu", drop_last=True)
    opt = cfg.get_optimizer_preset().build(policy.get_optim_params())
    sched_cfg = cfg.get_scheduler_preset()
    sched = sched_cfg.build(opt, 100_000) if sched_cfg is not None else None
    clip = cfg.get_optimizer_preset().grad_clip_norm

    def batches():
        while True:
            yield from loader

    it = batches()

    def step() -> None:  # the body of lerobot_train.py's loop and update_policy, without accelerate
        batch = pre(next(it))
        policy.train()
        loss, _ = policy.forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), clip)
        opt.step()
        opt.zero_grad()
        if sched is not None:
            sched.step()

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    sync()
    elapsed = time.perf_counter() - t0
    return {"samples_per_s": round(spec["steps"] * spec["batch_size"] / elapsed, 1),
            "step_ms": round(1000 * elapsed / spec["steps"], 2),
            "params": sum(p.numel() for p in policy.parameters() if p.requires_grad),
            "lerobot_version": lerobot.__version__, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "grad_clip_norm": clip}


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
