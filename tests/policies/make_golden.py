"""Regenerate tests/policies/golden/*.json: seeded losses and actions of ACT and Diffusion Policy on the fixture.

    .venv/bin/python tests/policies/make_golden.py

Run it only when a numeric change is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from il_fixtures import tiny_act, tiny_diffusion, write_fixture  # noqa: E402

from robolearn.data.stats import load_stats  # noqa: E402
from robolearn.data.windows import WindowDataset  # noqa: E402
from robolearn.policies.act import ACTPolicy  # noqa: E402
from robolearn.policies.common import resolve_features  # noqa: E402
from robolearn.policies.diffusion import DiffusionPolicy  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"


def golden_outputs(kind: str, root: Path) -> dict:
    """Losses of two seeded training steps and the actions predicted after them, for `kind`."""
    path = write_fixture(root / f"{kind}.zarr")
    cls, cfg = (ACTPolicy, tiny_act()) if kind == "act" else (DiffusionPolicy, tiny_diffusion())
    from robolearn.data.store import EpisodeStore

    store = EpisodeStore(path)
    features = resolve_features(store, cfg.state_keys, cfg.image_keys)
    torch.manual_seed(0)
    policy = cls(cfg, features, load_stats(store))
    ds = WindowDataset(store, policy.deltas)
    batch = ds.get_batch(list(range(len(ds))))
    opt = torch.optim.AdamW(policy.param_groups(), weight_decay=0.0)
    losses = []
    for _ in range(2):
        loss, _ = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if hasattr(policy, "ema_update"):
            policy.ema_update()
        losses.append(float(loss.detach()))
    policy.eval()
    obs = {k: batch[k] for k in policy.input_keys}
    if kind == "act":
        obs = {k: v[:, -1] for k, v in obs.items()}
        actions = policy.predict_action_chunk(obs)
    else:
        actions = policy.predict_action_chunk(obs, generator=torch.Generator().manual_seed(0))
    return {"losses": losses, "actions": actions[:3].tolist()}


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("act", "diffusion"):
            out = golden_outputs(kind, Path(tmp))
            (GOLDEN / f"{kind}.json").write_text(json.dumps(out, indent=1) + "\n")
            print(kind, out["losses"])


if __name__ == "__main__":
    main()
