// robolearn teleop page: inputs go to the server as JSON over one websocket; camera frames come back as JPEG.
"use strict";
const $ = (id) => document.getElementById(id);
let ws = null;
let frameUrl = null;
window.framesShown = 0;  // decoded camera frames (the page test waits on it)
const held = new Set();

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function connect() {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "blob";
  ws.onopen = () => { $("conn").textContent = "connected"; $("conn").className = "pill on"; send({ type: "hello" }); };
  ws.onclose = () => {
    $("conn").textContent = "disconnected"; $("conn").className = "pill off";
    setTimeout(connect, 1000);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") {  // a JPEG frame of the camera view
      const url = URL.createObjectURL(ev.data);
      $("view").src = url;
      if (frameUrl) URL.revokeObjectURL(frameUrl);
      frameUrl = url;
      return;
    }
    const m = JSON.parse(ev.data);
    if (m.type === "status") showStatus(m);
    if (m.type === "error") $("last").textContent = "error: " + m.message;
  };
}

function showStatus(s) {
  for (const k of ["kept", "discarded", "successes", "frames"]) if (k in s) $(k).textContent = s[k];
  $("rec").textContent = s.recording ? `recording ${s.episode_frames || 0}` : "idle";
  $("rec").className = s.recording ? "pill rec" : "pill";
  $("interv").hidden = !s.intervening;
  if (s.last) $("last").textContent = s.last;
  if (s.command && s.command.length) $("command").textContent = s.command.map((v) => v.toFixed(2)).join(" ");
}

// ---- keyboard: key-down/up of KeyboardEvent.key (lower case, " " is "space")
const keyName = (e) => (e.key === " " ? "space" : e.key.toLowerCase());
document.addEventListener("keydown", (e) => {
  if (e.repeat || e.target.tagName === "INPUT") return;
  held.add(keyName(e));
  send({ type: "key", key: keyName(e), down: true });
  if (e.key === " ") e.preventDefault();
});
document.addEventListener("keyup", (e) => { held.delete(keyName(e)); send({ type: "key", key: keyName(e), down: false }); });
window.addEventListener("blur", () => { held.clear(); send({ type: "blur" }); });

// ---- episode buttons
for (const b of document.querySelectorAll("button[data-event]")) {
  b.addEventListener("click", () => send({ type: "event", name: b.dataset.event }));
}

// ---- Gamepad API (standard mapping), sent about 30 times a second while one is connected
let lastPad = 0;
function pollPad(t) {
  const pads = navigator.getGamepads ? Array.from(navigator.getGamepads()).filter(Boolean) : [];
  if (pads.length && t - lastPad > 33) {
    const p = pads[0];
    $("pad").textContent = `${p.id} (${p.mapping || "non-standard"})`;
    send({ type: "gamepad", axes: Array.from(p.axes), buttons: p.buttons.map((b) => [b.pressed, b.value]) });
    lastPad = t;
  }
  requestAnimationFrame(pollPad);
}
requestAnimationFrame(pollPad);

// ---- phone orientation (DeviceOrientation): tilt from where the phone was when switched on
let tiltOn = false;
let lastTilt = 0;
function onOrientation(e) {
  const now = performance.now();
  if (now - lastTilt < 33) return;
  lastTilt = now;
  send({ type: "orientation", beta: e.beta, gamma: e.gamma });
}
$("btn-tilt").addEventListener("click", async () => {
  if (!tiltOn) {
    // iOS asks for permission from a user gesture
    if (typeof DeviceOrientationEvent !== "undefined" && DeviceOrientationEvent.requestPermission) {
      if ((await DeviceOrientationEvent.requestPermission()) !== "granted") return;
    }
    window.addEventListener("deviceorientation", onOrientation);
    tiltOn = true;
  } else {
    window.removeEventListener("deviceorientation", onOrientation);
    send({ type: "orientation_off" });
    tiltOn = false;
  }
  $("btn-tilt").textContent = `Phone tilt: ${tiltOn ? "on" : "off"}`;
  $("btn-recenter").hidden = !tiltOn;
});
$("btn-recenter").addEventListener("click", () => { lastTilt = 0; send({ type: "recenter" }); });

$("view").addEventListener("load", () => { window.framesShown += 1; });
connect();
