"""Keyboard teleop: held keys drive command axes, single keys fire episode events (teleop/keyboard.yaml).

`KeyState` is the decoding shared with the browser page (which reports key-down/key-up). `TerminalKeyboard`
reads the terminal in raw mode: a terminal reports presses and auto-repeats but no releases, so a press holds
its axis for `hold_s` seconds (the auto-repeat of a held key keeps it alive).
"""

from __future__ import annotations

import os
import select
import sys
import time
from typing import Any

from robolearn.teleop.device import Device, DeviceError, DeviceInput
from robolearn.teleop.mapping import Mapper, Mapping, load_mapping

_TERMINAL_NAMES = {" ": "space", "\r": "enter", "\n": "enter", "\x1b": "escape", "\x7f": "backspace", "\t": "tab",
                   "\x1b[A": "arrowup", "\x1b[B": "arrowdown", "\x1b[C": "arrowright", "\x1b[D": "arrowleft"}


def key_name(key: str) -> str:
    """Normalize a key name: KeyboardEvent.key or a terminal character -> lower-case name (' ' -> 'space')."""
    if key in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[key]
    return key.lower()


class KeyState:
    """Which keys are down (with optional expiry for terminals) -> command and events."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapper = Mapper(mapping)
        self.down: dict[str, float] = {}  # key -> expiry time (inf while held until a key-up)
        self._pressed: list[str] = []  # presses since the last poll (a quick tap must still fire its event)

    def key_down(self, key: str, hold_s: float | None = None, now: float | None = None) -> None:
        """A key went down (hold_s: release it automatically after that long)."""
        k = key_name(key)
        now = time.monotonic() if now is None else now
        if k not in self.down:
            self._pressed.append(k)
        self.down[k] = float("inf") if hold_s is None else now + hold_s

    def key_up(self, key: str) -> None:
        """A key went up."""
        self.down.pop(key_name(key), None)

    def read(self, now: float | None = None) -> DeviceInput:
        """Command from held keys; events from keys pressed since the last read."""
        now = time.monotonic() if now is None else now
        for k in [k for k, t in self.down.items() if t <= now]:
            del self.down[k]
        cmd = self.mapper.command(dict.fromkeys(self.down, 1.0))
        events = []
        for k in self._pressed:
            ev = self.mapper.mapping.events.get(k)
            if ev is not None:
                events.append(ev)
        self._pressed.clear()
        return DeviceInput(command=cmd, events=events)


class TerminalKeyboard(Device):
    """Keys typed in the terminal that runs `robolearn collect` (works over SSH, needs no display)."""

    name = "keyboard"

    def __init__(self, mapping: str = "keyboard", stream: Any = None) -> None:
        self.mapping = load_mapping(mapping)
        self.hold_s = float(self.mapping.options.get("hold_s", 0.15))
        self.keys = KeyState(self.mapping)
        self.stream = stream
        self._saved: Any = None

    def open(self) -> None:
        """Put the terminal in cbreak mode (no echo, keys arrive one at a time)."""
        if self.stream is not None:
            return
        if not sys.stdin.isatty():
            raise DeviceError("keyboard: standard input is not a terminal; run collect in a terminal, "
                              "or use --device browser (keys in a web page) or --device expert")
        import termios
        import tty

        self.stream = sys.stdin
        self._saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setcbreak(sys.stdin.fileno())

    def _read_available(self) -> str:
        fd = self.stream.fileno()
        out = ""
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 64).decode(errors="ignore")
            if not chunk:
                break
            out += chunk
        return out

    def feed(self, text: str, now: float | None = None) -> None:
        """Decode typed characters (escape sequences for arrows included) into key presses."""
        i = 0
        while i < len(text):
            seq = text[i:i + 3]
            if seq in _TERMINAL_NAMES:
                self.keys.key_down(seq, self.hold_s, now)
                i += 3
                continue
            self.keys.key_down(text[i], self.hold_s, now)
            i += 1

    def poll(self, context: dict[str, Any]) -> DeviceInput:
        """Read what was typed since the last step."""
        self.feed(self._read_available())
        return self.keys.read()

    def close(self) -> None:
        """Restore the terminal."""
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None
