"""The scripted expert as a device: the task's oracle `expert_action(obs)`, optionally with noise.

Demos without a person. It starts every episode itself and lets episodes end when the task ends them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robolearn.teleop.device import Device, DeviceError, DeviceInput, Event


class ExpertDevice(Device):
    """Replays the task's scripted expert; `noise` is the std of Gaussian noise on the normalized action."""

    name = "expert"
    realtime = False

    def __init__(self, noise: float = 0.0, seed: int = 0) -> None:
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self._started = False

    def poll(self, context: dict[str, Any]) -> DeviceInput:
        """The expert's action for env 0; a START event whenever no episode is being recorded."""
        env, obs = context["env"], context["obs"]
        if not hasattr(env, "expert_action"):
            raise DeviceError(f"expert: task '{env.spec.name}' has no scripted expert (expert_action)")
        try:
            a = env.expert_action(obs)
        except ValueError as e:
            raise DeviceError(f"expert: {e}") from None
        a = a.detach().cpu().numpy().astype(np.float32)[0]
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, a.shape).astype(np.float32)
        a = np.clip(a, env.spec.action.low, env.spec.action.high)
        events = [] if context.get("recording") else [Event.START]
        return DeviceInput(action=a, events=events)
