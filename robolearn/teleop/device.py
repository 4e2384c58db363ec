"""The one device interface: every teleop device yields a `DeviceInput` per control step.

A device produces a *command*, a normalized 7-vector in [-1, 1]

    x, y, z          translation (forward, left, up) of the end effector / body
    roll, pitch, yaw rotation rates about those axes
    gripper          close (+1) / open (-1)

plus control events (start, stop, success, discard, intervene) that drive episode recording. The task adapter
(`robolearn.teleop.adapter`) turns the command into the task's action; a device that already knows the task's
action (the scripted expert) sets `action` instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robolearn.core.errors import RobolearnError

AXES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
"""Names of the command entries, in order."""


class Event(enum.Enum):
    """Episode controls a device can send."""

    START = "start"  # begin recording an episode
    STOP = "stop"  # end the episode and keep it (no success label)
    SUCCESS = "success"  # end the episode, keep it, label it a success
    DISCARD = "discard"  # drop the episode in progress
    INTERVENE = "intervene"  # toggle human takeover (recorded per frame)
    QUIT = "quit"  # leave the collection session

    @classmethod
    def parse(cls, name: str, where: str = "") -> Event:
        """An event from its name, or an error listing the names."""
        try:
            return cls(str(name).lower())
        except ValueError:
            raise DeviceError(f"{where}unknown event '{name}'; known: {', '.join(e.value for e in cls)}") from None


class DeviceError(RobolearnError):
    """A teleop device is missing, cannot be opened, or sent something that is not understood."""


@dataclass
class DeviceInput:
    """What a device reports for one control step."""

    command: np.ndarray = field(default_factory=lambda: np.zeros(len(AXES), np.float32))  # (7,) in [-1, 1]
    events: list[Event] = field(default_factory=list)
    action: np.ndarray | None = None  # the task action, when the device produces one directly (scripted expert)
    intervening: bool = False  # the human is in control (HIL); recorded per frame


def axis_index(name: str, where: str = "") -> int:
    """Index of a command axis by name."""
    if name not in AXES:
        raise DeviceError(f"{where}unknown axis '{name}'; known: {', '.join(AXES)}")
    return AXES.index(name)


class Device:
    """Base class: `open`, then `poll(context)` once per control step, then `close`.

    `context` carries what some devices need: the env, its latest observation, and (for the browser) the latest
    camera frame and counters to show. Devices that need no context ignore it.
    """

    name = "device"
    realtime = True  # a person is in the loop: collection runs at the task's control rate
    needs_view = False  # wants camera frames (the browser page shows them)

    def open(self) -> None:
        """Acquire the hardware / start servers."""

    def poll(self, context: dict[str, Any]) -> DeviceInput:
        """The command and events of this step."""
        raise NotImplementedError

    def show(self, jpeg: bytes | None, status: dict[str, Any]) -> None:
        """Receive the live camera frame (JPEG) and collection status; only devices with a view use it."""

    def close(self) -> None:
        """Release the hardware / stop servers."""

    def __enter__(self) -> Device:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EventLatch:
    """Edge detection for buttons: an event fires once when its button goes down, not every step it is held."""

    def __init__(self) -> None:
        self._down: set[Any] = set()

    def press(self, button: Any, down: bool) -> bool:
        """True exactly on the step `button` goes from up to down."""
        if down and button not in self._down:
            self._down.add(button)
            return True
        if not down:
            self._down.discard(button)
        return False


class WithView(Device):
    """A device plus the browser page as live view and episode buttons: commands add up, events merge."""

    def __init__(self, primary: Device, viewer: Device) -> None:
        self.primary, self.viewer = primary, viewer
        self.name = primary.name
        self.realtime = primary.realtime
        self.needs_view = True

    @property
    def url(self) -> str:
        """Where the view is served."""
        return str(getattr(self.viewer, "url", ""))

    def open(self) -> None:
        """Open both (the primary first: a missing device fails before a server starts)."""
        self.primary.open()
        try:
            self.viewer.open()
        except BaseException:
            self.primary.close()
            raise

    def poll(self, context: dict[str, Any]) -> DeviceInput:
        """Sum of commands (clipped), events of both, the primary's action if it has one."""
        a, b = self.primary.poll(context), self.viewer.poll(context)
        return DeviceInput(command=np.clip(a.command + b.command, -1.0, 1.0).astype(np.float32),
                           events=a.events + b.events, action=a.action, intervening=a.intervening or b.intervening)

    def show(self, jpeg: bytes | None, status: dict[str, Any]) -> None:
        """Frames go to the page."""
        self.viewer.show(jpeg, status)

    def close(self) -> None:
        """Close both."""
        try:
            self.viewer.close()
        finally:
            self.primary.close()
