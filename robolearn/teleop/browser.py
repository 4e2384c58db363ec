"""Browser teleop: a local aiohttp server for the page in teleop/web/ (one websocket per open page).

The page sends key-down/up (KeyboardEvent.key), Gamepad API snapshots (standard mapping), phone orientation
(DeviceOrientation beta/gamma) and episode buttons as JSON; the server sends the live camera view as binary
JPEG messages and the collection status (counters, recording, last command) as JSON. The server runs on its own
thread and event loop; `poll` merges the three inputs (keyboard + gamepad + tilt, clipped) under a lock.

Serve on 127.0.0.1 by default; `--host 0.0.0.0` lets a phone on the same network connect (no authentication:
use it on a trusted network only).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.core.errors import require
from robolearn.teleop.device import Device, DeviceError, DeviceInput, Event
from robolearn.teleop.gamepad import GamepadState
from robolearn.teleop.keyboard import KeyState
from robolearn.teleop.mapping import TELEOP_DIR, Mapper, load_mapping

WEB_DIR = TELEOP_DIR / "web"


class BrowserDevice(Device):
    """Teleop from a web page: keyboard, gamepad and phone tilt, with the camera view and episode controls."""

    name = "browser"
    needs_view = True

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, *, keyboard: str = "keyboard",
                 gamepad: str = "browser_gamepad", phone: str = "phone", web_dir: str | Path | None = None) -> None:
        self.host, self.port = host, port
        self.web_dir = Path(web_dir) if web_dir else WEB_DIR
        if not (self.web_dir / "index.html").is_file():
            raise DeviceError(f"browser: page not found at {self.web_dir}/index.html (it lives in teleop/web/)")
        self.keys = KeyState(load_mapping(keyboard))
        self.pad = GamepadState(load_mapping(gamepad))
        self.tilt = Mapper(load_mapping(phone))
        self._tilt: dict[str, float] = {}
        self._tilt_zero: dict[str, float] | None = None
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._status: dict[str, Any] = {}
        self._clients: dict[Any, asyncio.Lock] = {}
        self._sending: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.messages = 0  # inputs received (for tests and the status line)
        self.url = ""

    # ---- server thread
    def open(self) -> None:
        """Start the server; returns once it listens (`url` is set)."""
        require("aiohttp", "teleop")
        self._thread = threading.Thread(target=self._serve, name="robolearn-teleop-web", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise DeviceError(f"browser: cannot serve on {self.host}:{self.port}: {self._error}") from None
        if not self.url:
            raise DeviceError("browser: the server did not start")

    def _serve(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._ws)
        app.router.add_static("/static/", self.web_dir)
        runner = web.AppRunner(app, access_log=None)
        self._runner = runner
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
            shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
            self.url = f"http://{shown}:{port}/"
        except BaseException as e:  # noqa: BLE001 - reported by open()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    async def _index(self, request: Any) -> Any:
        from aiohttp import web

        return web.FileResponse(self.web_dir / "index.html")

    async def _ws(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(heartbeat=10)
        await ws.prepare(request)
        ws_lock = asyncio.Lock()  # one sender at a time per page
        self._clients[ws] = ws_lock
        try:
            async with ws_lock:
                if self._jpeg is not None:
                    await ws.send_bytes(self._jpeg)
                await ws.send_str(json.dumps({"type": "status", **self._status}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        self.handle(json.loads(msg.data))
                    except (ValueError, KeyError, TypeError, DeviceError) as e:
                        await ws.send_str(json.dumps({"type": "error", "message": str(e)}))
        finally:
            self._clients.pop(ws, None)
        return ws

    async def _broadcast(self, jpeg: bytes | None, status: str) -> None:
        async def send(ws: Any, lock: asyncio.Lock) -> None:
            try:
                async with lock:
                    if jpeg is not None:
                        await asyncio.wait_for(ws.send_bytes(jpeg), 5)
                    await asyncio.wait_for(ws.send_str(status), 5)
            except (TimeoutError, ConnectionError, RuntimeError):
                self._clients.pop(ws, None)

        await asyncio.gather(*(send(ws, lock) for ws, lock in list(self._clients.items())))

    # ---- decoding (also used directly by tests)
    def handle(self, msg: dict[str, Any]) -> None:
        """Apply one message from the page."""
        kind = msg.get("type")
        with self._lock:
            self.messages += 1
            if kind == "key":
                (self.keys.key_down if msg["down"] else self.keys.key_up)(str(msg["key"]))
            elif kind == "blur":  # the page lost focus: release everything
                self.keys.down.clear()
            elif kind == "gamepad":
                for i, v in enumerate(msg.get("axes", [])):
                    self.pad.axis(i, float(v))
                for i, b in enumerate(msg.get("buttons", [])):
                    pressed, value = (b[0], b[1]) if isinstance(b, list | tuple) else (bool(b), float(bool(b)))
                    self.pad.button(i, bool(pressed), float(value))
            elif kind == "orientation":
                now = {"beta": float(msg.get("beta") or 0.0), "gamma": float(msg.get("gamma") or 0.0)}
                if self._tilt_zero is None:
                    self._tilt_zero = dict(now)
                self._tilt = now
            elif kind == "recenter":  # the phone's current tilt becomes zero command
                self._tilt_zero = dict(self._tilt) if self._tilt else None
            elif kind == "orientation_off":
                self._tilt, self._tilt_zero = {}, None
            elif kind == "event":
                self._events.append(Event.parse(msg["name"], "browser: "))
            elif kind != "hello":
                raise DeviceError(f"browser: unknown message type {kind!r}")
            # key and button presses join the event queue in arrival order (with the page's buttons)
            for state in (self.keys, self.pad):
                self._events += [state.mapper.mapping.events[n] for n in state._pressed
                                 if n in state.mapper.mapping.events]
                state._pressed.clear()

    def poll(self, context: dict[str, Any]) -> DeviceInput:
        """Keyboard + gamepad + tilt command (clipped), and every event since the last poll."""
        with self._lock:
            k = self.keys.read()
            p = self.pad.read()
            scale = self.tilt.mapping.scale or 1.0
            zero = self._tilt_zero or {}
            t = self.tilt.command({n: (v - zero.get(n, 0.0)) / scale for n, v in self._tilt.items()})
            events = self._events + k.events + p.events
            self._events = []
        cmd = np.clip(k.command + p.command + t, -1.0, 1.0).astype(np.float32)
        self._status["command"] = [round(float(c), 3) for c in cmd]
        return DeviceInput(command=cmd, events=events)

    def show(self, jpeg: bytes | None, status: dict[str, Any]) -> None:
        """Send the latest frame and status to every open page (dropped if the page is slower than the sim)."""
        self._jpeg = jpeg if jpeg is not None else self._jpeg
        self._status = {**status, "command": self._status.get("command", [])}
        busy = self._sending is not None and not self._sending.done()
        if self._loop is None or not self._clients:
            return
        text = json.dumps({"type": "status", **self._status})
        if jpeg is None:  # status alone (episode ends): always sent, it is small and rare
            asyncio.run_coroutine_threadsafe(self._broadcast(None, text), self._loop)
        elif not busy:  # a slow page skips frames, never queues them
            self._sending = asyncio.run_coroutine_threadsafe(self._broadcast(jpeg, text), self._loop)

    @property
    def clients(self) -> int:
        """Open pages."""
        return len(self._clients)

    def close(self) -> None:
        """Stop the server thread."""
        if self._loop is not None and self._thread is not None:
            async def _close_all() -> None:
                for ws in list(self._clients):
                    await ws.close()

            try:
                asyncio.run_coroutine_threadsafe(_close_all(), self._loop).result(5)
            except Exception:  # noqa: BLE001, S110 - closing pages is best effort
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None
