"""Gamepad teleop through pygame (SDL2): sticks and triggers drive command axes, buttons fire events.

`GamepadState` decodes SDL joystick events (axis motion, button down/up) and is what the tests exercise with
recorded event sequences; `PygameGamepad` feeds it from the first connected joystick. The browser page's Gamepad
API input goes through the same `GamepadState` (with teleop/browser_gamepad.yaml).
"""

from __future__ import annotations

import os
from typing import Any

from robolearn.core.errors import require
from robolearn.teleop.device import Device, DeviceError, DeviceInput
from robolearn.teleop.mapping import Mapper, Mapping, load_mapping


class GamepadState:
    """Latest axis values and button states -> command and events."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapper = Mapper(mapping)
        self.triggers = {str(t).lower() for t in mapping.options.get("triggers", [])}
        self.axes: dict[str, float] = {}
        self.buttons: dict[str, bool] = {}
        self._pressed: list[str] = []

    def axis(self, index: int, value: float) -> None:
        """SDL JOYAXISMOTION: axis `index` now reads `value` in [-1, 1]."""
        name = f"axis{index}"
        if name in self.triggers:  # triggers rest at -1: rescale to [0, 1]
            value = (value + 1.0) / 2.0
        self.axes[name] = max(-1.0, min(1.0, float(value)))

    def button(self, index: int, down: bool, value: float | None = None) -> None:
        """SDL JOYBUTTONDOWN/UP (or a browser button with its analog `value`)."""
        name = f"button{index}"
        if down and not self.buttons.get(name, False):
            self._pressed.append(name)
        self.buttons[name] = bool(down)
        self.axes[name] = float(value if value is not None else (1.0 if down else 0.0))

    def read(self) -> DeviceInput:
        """Command from axes (and analog buttons); events from buttons pressed since the last read."""
        cmd = self.mapper.command(self.axes)
        events = [self.mapper.mapping.events[b] for b in self._pressed if b in self.mapper.mapping.events]
        self._pressed.clear()
        return DeviceInput(command=cmd, events=events)


class PygameGamepad(Device):
    """The first joystick SDL finds (hot-plug is not handled: connect it before starting)."""

    name = "gamepad"

    def __init__(self, mapping: str = "gamepad", index: int = 0) -> None:
        self.state = GamepadState(load_mapping(mapping))
        self.index = index
        self._pg: Any = None
        self._js: Any = None

    def open(self) -> None:
        """Initialize SDL's joystick subsystem (no window needed)."""
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        pg = require("pygame", "teleop")
        pg.init()
        try:
            pg.joystick.init()
            count = pg.joystick.get_count()
        except pg.error as e:
            pg.quit()
            raise DeviceError(f"gamepad: SDL cannot open joysticks here ({e}); no joystick #{self.index} found; "
                              "use --device keyboard / browser / expert") from None
        if count <= self.index:
            pg.quit()
            raise DeviceError(f"gamepad: no joystick #{self.index} found ({count} connected); "
                              "plug one in, or use --device keyboard / browser / expert")
        self._pg, self._js = pg, pg.joystick.Joystick(self.index)
        self._js.init()

    def poll(self, context: dict[str, Any]) -> DeviceInput:
        """Drain SDL's event queue into the state."""
        pg = self._pg
        for ev in pg.event.get():
            if ev.type == pg.JOYAXISMOTION:
                self.state.axis(ev.axis, ev.value)
            elif ev.type == pg.JOYBUTTONDOWN:
                self.state.button(ev.button, True)
            elif ev.type == pg.JOYBUTTONUP:
                self.state.button(ev.button, False)
            elif ev.type == pg.JOYDEVICEREMOVED:
                raise DeviceError("gamepad: the joystick was disconnected")
        return self.state.read()

    def close(self) -> None:
        """Shut SDL down."""
        if self._pg is not None:
            self._pg.quit()
            self._pg = self._js = None
