"""Time LeRobot's own data loader on a LeRobot v3.0 dataset: run by `robolearn bench dataset-windows --lerobot-python`.

This file runs in *another* interpreter, one with `lerobot` installed (LeRobot pins its own torch, so it lives in
its own venv), and imports nothing from robolearn. It builds `LeRobotDataset(root=...)` with `delta_timestamps`
equal to the windows robolearn's loader is timed on, wraps it in a torch DataLoader exactly as LeRobot's training
script does (shuffle, `pin_memory` off on the CPU), and prints one JSON object:
`{"windows_per_s": [...], "workers": [...], "lerobot_version": ..., "video_backend": ...}`.

    python lerobot_loader_timing.py ROOT '{"deltas": {...}, "fps": 30, "batch_size": 64, "batches": 20,
                                           "workers": [0, 2], "video_backend": "torchcodec"}'
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(root: str, spec: dict) -> dict:
    """Windows/s of LeRobotDataset + DataLoader for each worker count in `spec["workers"]`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local dataset: never reach for the Hub
    import lerobot
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    fps = spec["fps"]
    delta_timestamps = {k: [d / fps for d in v] for k, v in spec["deltas"].items()}
    t0 = time.perf_counter()
    ds = LeRobotDataset("local/robolearn-bench", root=root, delta_timestamps=delta_timestamps,
                        video_backend=spec.get("video_backend"))
    open_s = time.perf_counter() - t0
    rates, shapes = [], {}
    for nw in spec["workers"]:
        loader = torch.utils.data.DataLoader(ds, batch_size=spec["batch_size"], shuffle=True, num_workers=nw,
                                             drop_last=True, generator=torch.Generator().manual_seed(0))
        # the same timing loop as `dataset_windows` in bench.py (copied: this interpreter has no robolearn)
        it = iter(loader)
        batch = next(it)  # warm-up: worker start-up is not counted
        shapes = {k: list(v.shape[1:]) for k, v in batch.items() if isinstance(v, torch.Tensor) and v.ndim > 1}
        n, t0 = 0, time.perf_counter()
        for _ in range(spec["batches"]):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            n += batch["action"].shape[0]
        rates.append(round(n / (time.perf_counter() - t0), 1))
        del it, loader
    return {"windows_per_s": rates, "workers": spec["workers"], "lerobot_version": lerobot.__version__,
            "torch": torch.__version__, "video_backend": ds.video_backend, "open_s": round(open_s, 2),
            "window": shapes}


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))  # robolearn/data holds a lerobot.py: not the package
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
