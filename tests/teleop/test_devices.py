"""Device input decoding: mapping files, keyboard keys, recorded SDL gamepad events, recorded SpaceMouse HID reports,
browser messages, and the scripted expert device."""

import struct

import numpy as np
import pytest

from robolearn.core.errors import MissingExtraError
from robolearn.teleop.device import AXES, DeviceError, Event
from robolearn.teleop.gamepad import GamepadState
from robolearn.teleop.keyboard import KeyState, TerminalKeyboard
from robolearn.teleop.mapping import TELEOP_DIR, load_mapping, parse_mapping
from robolearn.teleop.spacemouse import SpaceMouse, SpaceMouseState

X, Y, Z, ROLL, PITCH, YAW, GRIP = range(7)


def test_every_mapping_file_in_teleop_parses():
    names = sorted(p.stem for p in TELEOP_DIR.glob("*.yaml"))
    assert {"keyboard", "gamepad", "browser_gamepad", "phone", "spacemouse"} <= set(names)
    for n in names:
        load_mapping(n)


def test_bad_mapping_entries_name_the_file_and_entry():
    with pytest.raises(DeviceError, match=r"axes.w: unknown axis 'forward'"):
        parse_mapping({"axes": {"w": ["forward", 1]}}, "k.yaml")
    with pytest.raises(DeviceError, match=r"events.g: unknown event 'begin'"):
        parse_mapping({"events": {"g": "begin"}}, "k.yaml")
    with pytest.raises(DeviceError, match="unknown keys"):
        parse_mapping({"axis": {}}, "k.yaml")


def test_keyboard_held_keys_drive_axes_and_presses_fire_events_once():
    ks = KeyState(load_mapping("keyboard"))
    ks.key_down("w")
    ks.key_down("A")  # shift held: same key
    ks.key_down(" ")
    inp = ks.read()
    assert inp.command[X] == 1.0 and inp.command[Y] == 1.0 and inp.command[GRIP] == 1.0 and inp.events == []
    ks.key_down("s")  # opposite keys cancel
    assert ks.read().command[X] == 0.0
    ks.key_up("w"), ks.key_up("s"), ks.key_up("a"), ks.key_up("space")
    assert not ks.read().command.any()
    ks.key_down("g")
    ks.key_up("g")  # a quick tap between two polls still fires
    assert ks.read().events == [Event.START]
    assert ks.read().events == []


def test_terminal_keys_hold_for_hold_s_and_decode_arrow_sequences():
    kb = TerminalKeyboard("keyboard", stream=object())
    kb.feed("wy\x1b[A", now=100.0)
    inp = kb.keys.read(now=100.01)
    assert inp.command[X] == 1.0 and inp.events == [Event.SUCCESS]
    assert "arrowup" in kb.keys.down
    assert not kb.keys.read(now=100.0 + kb.hold_s + 0.01).command.any()  # no key-up in a terminal: it expires


def test_gamepad_recorded_sdl_events_to_command_and_events():
    pad = GamepadState(load_mapping("gamepad"))
    # (kind, index, value) as pygame decodes them: left stick pushed up and right, right trigger half pressed
    for kind, i, v in [("axis", 1, -1.0), ("axis", 0, 0.5), ("axis", 5, 0.0), ("axis", 3, 0.05),
                       ("button", 7, True), ("button", 0, True)]:
        pad.axis(i, v) if kind == "axis" else pad.button(i, v)
    inp = pad.read()
    dz = 0.12
    assert inp.command[X] == pytest.approx(1.0)
    assert inp.command[Y] == pytest.approx(-(0.5 - dz) / (1 - dz))
    assert inp.command[GRIP] == pytest.approx((0.5 - dz) / (1 - dz))  # trigger -1..1 -> 0..1, then deadzone
    assert inp.command[YAW] == 0.0  # inside the deadzone
    assert inp.events == [Event.START, Event.SUCCESS]
    assert pad.read().events == []  # held buttons do not repeat
    pad.button(7, False)
    pad.button(7, True)
    assert pad.read().events == [Event.START]


def _report(rid: int, *vals: int) -> bytes:
    return bytes([rid]) + struct.pack(f"<{len(vals)}h", *vals)


def test_spacemouse_recorded_hid_reports_decode():
    sm = SpaceMouseState(load_mapping("spacemouse"))
    # SpaceNavigator-style: translation and rotation in separate reports (bytes as read from /dev/hidraw)
    sm.feed(bytes.fromhex("01 00 00 a2 fe 00 00"))  # ty = -350: pushed away from the user
    sm.feed(_report(2, 0, 0, 175))  # rz = +175: twisted clockwise seen from above
    sm.feed(bytes.fromhex("03 02 00"))  # button 1 down
    inp = sm.read()
    assert sm.raw["ty"] == -350
    assert inp.command[X] == pytest.approx(1.0) and inp.command[YAW] < -0.4
    assert inp.events == [Event.SUCCESS]
    # newer firmware: one 13-byte report with all six axes
    sm.feed(_report(1, 350, 0, -350, 0, 0, 0))
    inp = sm.read()
    assert inp.command[Y] == pytest.approx(-1.0) and inp.command[Z] == pytest.approx(1.0)
    assert inp.command[YAW] == 0.0 and inp.events == []
    sm.feed(bytes.fromhex("03 00 00"))
    sm.feed(bytes.fromhex("03 01 00"))  # button 0 -> intervene
    assert sm.read().events == [Event.INTERVENE]
    with pytest.raises(DeviceError, match="report id 2 too short"):
        sm.feed(bytes.fromhex("02 01"))
    sm.feed(bytes.fromhex("17 64"))  # battery report: ignored


def test_missing_spacemouse_gives_one_clear_message():
    try:
        import hid  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match=r"robolearn\[teleop\]"):
            SpaceMouse().open()
    else:
        dev = SpaceMouse()
        if not any(d.get("vendor_id") in dev.vendor_ids for d in hid.enumerate()):
            with pytest.raises(DeviceError, match="no 3Dconnexion device found"):
                dev.open()


def test_browser_messages_decode_to_command_and_events():
    pytest.importorskip("aiohttp")
    from robolearn.teleop.browser import BrowserDevice

    b = BrowserDevice()  # not opened: decoding only
    b.handle({"type": "key", "key": "w", "down": True})
    b.handle({"type": "gamepad", "axes": [0.0, 0.0, -1.0, 0.0], "buttons": [[True, 1.0]] + [[False, 0.0]] * 16})
    b.handle({"type": "orientation", "beta": 10.0, "gamma": 0.0})  # first reading is the zero
    b.handle({"type": "orientation", "beta": 25.0, "gamma": -30.0})
    b.handle({"type": "event", "name": "discard"})
    inp = b.poll({})
    # key w (+1) plus the phone tilted back by 15 deg of a 30 deg full scale, deadzone 0.05 (gain -1)
    assert inp.command[X] == pytest.approx(1.0 - (15 / 30 - 0.05) / 0.95)
    assert inp.command[YAW] == pytest.approx(1.0)  # right stick x = -1, gain -1
    assert inp.command[Y] == pytest.approx(1.0)
    assert inp.events == [Event.SUCCESS, Event.DISCARD]  # in arrival order
    with pytest.raises(DeviceError, match="unknown event 'oops'"):
        b.handle({"type": "event", "name": "oops"})
    b.handle({"type": "blur"})
    b.handle({"type": "orientation_off"})
    b.handle({"type": "gamepad", "axes": [0, 0, 0, 0], "buttons": []})
    assert not b.poll({}).command.any()


def test_expert_device_produces_the_task_expert_action():
    import torch

    from robolearn.envs.registry import make
    from robolearn.teleop.expert import ExpertDevice

    env = make("quadrotor-hover", num_envs=1)
    obs = env.reset()
    inp = ExpertDevice().poll({"env": env, "obs": obs, "recording": False})
    assert inp.events == [Event.START]
    np.testing.assert_allclose(inp.action, env.expert_action(obs)[0].numpy(), atol=1e-6)
    noisy = ExpertDevice(noise=0.1, seed=1).poll({"env": env, "obs": obs, "recording": True})
    assert noisy.events == [] and not np.allclose(noisy.action, inp.action)
    assert np.all(np.abs(noisy.action) <= 1.0) and len(AXES) == 7 and torch.is_tensor(obs["policy"])


def test_missing_gamepad_gives_one_clear_message(monkeypatch):
    from robolearn.teleop.gamepad import PygameGamepad

    monkeypatch.setenv("SDL_JOYSTICK_DEVICE", "/nonexistent")
    try:
        import pygame  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match=r"robolearn\[teleop\]"):
            PygameGamepad().open()
        return
    dev = PygameGamepad(index=99)  # no machine here has 100 joysticks
    with pytest.raises(DeviceError, match=r"no joystick #99 found"):
        dev.open()


def test_keyboard_outside_a_terminal_says_what_to_use(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(DeviceError, match="not a terminal.*--device browser"):
        TerminalKeyboard().open()
