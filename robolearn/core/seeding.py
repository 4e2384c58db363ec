"""Seeding and RNG state capture, so that a resumed run continues the same random streams."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, torch.Tensor]:
    """Global RNG states as tensors (safetensors-friendly)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    np_state = np.random.get_state()
    state["numpy_keys"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    state["numpy_pos"] = torch.tensor([np_state[2]], dtype=torch.int64)
    state["numpy_gauss"] = torch.tensor([np_state[3], np_state[4]], dtype=torch.float64)  # cached normal draw
    py = random.getstate()
    state["python"] = torch.tensor(py[1], dtype=torch.int64)
    state["python_gauss"] = torch.tensor([py[2] is not None, py[2] or 0.0], dtype=torch.float64)  # cached draw
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(k for k in state if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    has_gauss, gauss = state["numpy_gauss"].tolist() if "numpy_gauss" in state else (0, 0.0)
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(state["numpy_pos"][0]),
                         int(has_gauss), float(gauss)))
    has_py_gauss, py_gauss = state["python_gauss"].tolist() if "python_gauss" in state else (0, 0.0)
    random.setstate((3, tuple(int(x) for x in state["python"].tolist()), py_gauss if has_py_gauss else None))


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without touching the global random streams (Python, NumPy, torch CPU and CUDA).

    Periodic evaluation rollouts draw random numbers (diffusion sampling noise, env resets through global RNGs);
    inside this block they do, but training continues afterwards exactly as if the block had not run, so a run
    with evaluation on trains the same weights as one with it off.
    """
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
