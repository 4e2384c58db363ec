"""3Dconnexion SpaceMouse over HID (the `hidapi` package, module `hid`): 6-DoF motion and two buttons.

HID input reports (little-endian, first byte is the report id):

    id 1, 7 bytes:   tx, ty, tz            int16 each     (SpaceNavigator, SpaceMouse Pro/Wireless older firmware)
    id 1, 13 bytes:  tx, ty, tz, rx, ry, rz int16 each    (SpaceMouse Compact / Wireless newer firmware)
    id 2, 7 bytes:   rx, ry, rz            int16 each
    id 3, >= 2 bytes: button bitmask       (bit i = button i)

`SpaceMouseState.feed(report)` decodes one report; tests feed it recorded byte reports.
"""

from __future__ import annotations

import struct
from typing import Any

from robolearn.core.errors import require
from robolearn.teleop.device import Device, DeviceError, DeviceInput
from robolearn.teleop.mapping import Mapper, Mapping, load_mapping

_MOTION = ("tx", "ty", "tz", "rx", "ry", "rz")


class SpaceMouseState:
    """Latest decoded motion (raw counts) and buttons -> command and events."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapper = Mapper(mapping)
        self.raw = dict.fromkeys(_MOTION, 0)
        self.buttons: dict[str, bool] = {}
        self._pressed: list[str] = []

    def feed(self, report: bytes | list[int]) -> None:
        """Decode one HID input report; an unknown or short report is an error naming its bytes."""
        data = bytes(report)
        if not data:
            return
        rid = data[0]
        if rid == 1 and len(data) >= 13:
            self.raw.update(zip(_MOTION, struct.unpack_from("<6h", data, 1), strict=True))
        elif rid == 1 and len(data) >= 7:
            self.raw.update(zip(_MOTION[:3], struct.unpack_from("<3h", data, 1), strict=True))
        elif rid == 2 and len(data) >= 7:
            self.raw.update(zip(_MOTION[3:], struct.unpack_from("<3h", data, 1), strict=True))
        elif rid == 3 and len(data) >= 2:
            mask = int.from_bytes(data[1:], "little")
            for i in range(8 * (len(data) - 1)):
                name, down = f"button{i}", bool(mask >> i & 1)
                if down and not self.buttons.get(name, False):
                    self._pressed.append(name)
                self.buttons[name] = down
        elif rid in (1, 2, 3):
            raise DeviceError(f"spacemouse: report id {rid} too short ({len(data)} bytes): {data.hex(' ')}")
        # other report ids (battery level, LEDs) carry no motion: ignored

    def read(self) -> DeviceInput:
        """Command from the motion axes scaled by the mapping's full-scale count; events from button presses."""
        scale = self.mapper.mapping.scale or 1.0
        cmd = self.mapper.command({k: v / scale for k, v in self.raw.items()})
        events = [self.mapper.mapping.events[b] for b in self._pressed if b in self.mapper.mapping.events]
        self._pressed.clear()
        return DeviceInput(command=cmd, events=events)


class SpaceMouse(Device):
    """The first 3Dconnexion device hidapi enumerates."""

    name = "spacemouse"

    def __init__(self, mapping: str = "spacemouse", path: bytes | None = None) -> None:
        self.state = SpaceMouseState(load_mapping(mapping))
        self.vendor_ids = [int(v) for v in self.state.mapper.mapping.options.get("vendor_ids", [0x046D, 0x256F])]
        self.path = path
        self._dev: Any = None

    def open(self) -> None:
        """Open the HID device in non-blocking mode."""
        hid = require("hid", "teleop")
        found = [d for d in hid.enumerate() if d.get("vendor_id") in self.vendor_ids
                 and ("3dconnexion" in str(d.get("manufacturer_string", "")).lower()
                      or "space" in str(d.get("product_string", "")).lower())]
        if self.path is None and not found:
            raise DeviceError("spacemouse: no 3Dconnexion device found over HID (is it plugged in, and does this user "
                              "may read /dev/hidraw*? see teleop/README.md for the udev rule)")
        dev = hid.device()
        try:
            dev.open_path(self.path or found[0]["path"])
        except OSError as e:
            raise DeviceError(f"spacemouse: cannot open the HID device: {e} (permissions on /dev/hidraw*?)") from None
        dev.set_nonblocking(True)
        self._dev = dev

    def poll(self, context: dict[str, Any]) -> DeviceInput:
        """Drain pending reports."""
        for _ in range(64):
            report = self._dev.read(64)
            if not report:
                break
            self.state.feed(report)
        return self.state.read()

    def close(self) -> None:
        """Close the HID handle."""
        if self._dev is not None:
            self._dev.close()
            self._dev = None
