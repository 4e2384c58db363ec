"""The browser teleop page in real headless Chromium (Playwright driving the system's chromium).

Skips, saying why, only when Playwright or a Chromium binary is missing or the browser cannot be launched.
"""

import os
import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp")
sync_api = pytest.importorskip("playwright.sync_api")

from robolearn.data import EpisodeStore  # noqa: E402
from robolearn.envs.registry import make  # noqa: E402
from robolearn.teleop.adapter import camera_frame, jpeg  # noqa: E402
from robolearn.teleop.browser import BrowserDevice  # noqa: E402
from robolearn.teleop.collect import Collector  # noqa: E402
from robolearn.teleop.device import Event  # noqa: E402


def chromium_path():
    for p in (os.environ.get("ROBOLEARN_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
              shutil.which("google-chrome")):
        if p and os.path.exists(p):
            return p
    return None


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    with sync_api.sync_playwright() as pw:
        try:
            # Debian's chromium (apt-get install chromium; `make setup` does it) instead of a downloaded build
            b = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"]) if exe else \
                pw.chromium.launch(headless=True)
        except Exception as e:  # noqa: BLE001
            pytest.skip(f"Chromium cannot be launched ({'no chromium binary on PATH; ' if not exe else ''}"
                        f"{type(e).__name__}: {str(e).splitlines()[0]})")
        yield b
        b.close()


def wait_for(cond, what, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"waited {timeout} s for {what}")


def test_page_shows_the_camera_and_sends_keys_and_episode_controls(browser):
    env = make("quadrotor-hover", num_envs=1)
    env.reset()
    frame = camera_frame(env)
    with BrowserDevice(port=0) as dev:
        dev.show(jpeg(frame), {"kept": 3, "discarded": 1, "recording": False})
        page = browser.new_page()
        page.goto(dev.url)
        page.wait_for_function("document.getElementById('conn').textContent === 'connected'", polling=50)
        # the camera frame arrives as a JPEG over the websocket and is decoded by the page
        page.wait_for_function("window.framesShown > 0", polling=50)
        assert page.evaluate("document.getElementById('view').naturalWidth") == frame.shape[1]
        assert page.inner_text("#kept") == "3" and page.inner_text("#discarded") == "1"
        # held keys reach the server as a command; releasing them stops it
        page.keyboard.down("w")
        page.keyboard.down("q")
        cmd = wait_for(lambda: (c := dev.poll({}).command)[0] > 0 and c[5] > 0 and [c], "keys w and q at the server")[0]
        assert cmd[0] == 1.0 and cmd[5] == 1.0  # forward and yaw, at full scale
        page.keyboard.up("w")
        page.keyboard.up("q")
        wait_for(lambda: not dev.poll({}).command.any(), "key release at the server")
        # buttons and keys produce episode events
        events = []
        page.click("#btn-start")
        page.keyboard.press("t")
        page.click("#btn-discard")
        wait_for(lambda: events.extend(dev.poll({}).events) or len(events) >= 3, "three events")
        assert events == [Event.START, Event.INTERVENE, Event.DISCARD]
        # the status the server pushes shows up on the page
        dev.show(None, {"kept": 5, "discarded": 2, "recording": True, "episode_frames": 7})
        page.wait_for_function("document.getElementById('kept').textContent === '5'", polling=50)
        assert page.inner_text("#rec") == "recording 7"
        page.close()


def test_an_episode_recorded_from_the_page_ends_up_in_the_store(browser, tmp_path):
    env = make("quadrotor-hover", num_envs=1, init_max_angle_deg=10.0, init_lin_vel=0.2, init_ang_vel=0.2)
    out = tmp_path / "web.zarr"
    with BrowserDevice(port=0) as dev:
        col = Collector(env, dev, out, episodes=1, camera=True, realtime=True, max_steps=3000, view_every=5)
        result = {}
        t = threading.Thread(target=lambda: result.update(st=col.run()), daemon=True)
        t.start()
        page = browser.new_page()
        page.goto(dev.url)
        page.wait_for_function("window.framesShown > 0", polling=50)
        page.click("#btn-start")
        wait_for(lambda: col.stats.recording, "recording to start")
        page.keyboard.down("w")
        wait_for(lambda: col.stats.episode_frames >= 20, "20 recorded frames")
        page.keyboard.up("w")
        page.click("#btn-success")
        t.join(60)
        assert not t.is_alive()
        page.wait_for_function("document.getElementById('kept').textContent === '1'", polling=50)
        page.close()
    st = result["st"]
    assert (st.kept, st.successes) == (1, 1)
    s = EpisodeStore(out)
    d = s.read_episode(0)
    assert s.num_episodes == 1 and s.sessions[0]["device"] == "browser"
    assert d["next.success"][-1] and (d["teleop.command"][:, 0] == 1.0).sum() >= 10
    assert d["observation.images.camera"].shape[1:] == (96, 96, 3) and np.ptp(d["observation.images.camera"]) > 0
