"""policy_node: run an exported robolearn policy on a robot through ROS 2, with a watchdog, limits and an e-stop.

    robolearn-policy-node --ros-args -p artifact:=runs/hover/artifact -p topic_map:=config/crazyflie.yaml

Configured by the artifact's manifest (observation terms, action terms and limits, control rate) and a YAML
topic map (adapter, topics, options; see `topic_map.py`). States:

- inactive: nothing is published (`~/activate` or `autostart` leaves it);
- active: every control period (or on every state message with `trigger:=input`) the adapter builds the
  observation, the runtime infers, and the command — clamped to the manifest's physical limits — is published;
- fault: an input went quiet for `watchdog_periods` control periods, held NaN/inf, or the clock jumped: the
  adapter's safe action is published and the node resumes by itself once inputs are fresh and finite;
- estop: `~/estop` latches the safe action (the Crazyflie: motors off) until `~/clear_estop`;
- stopping: `~/deactivate` plays the safe sequence, then goes inactive;
- landing (Crazyflie): `~/land` while active — the policy flies the goal down to the ground, then the motors
  are switched off and the node goes inactive; `~/takeoff` activates with the goal ramping up from the ground.
  A safe sequence that ends on the ground (watchdog timeout, a landing that does not touch down) also ends in
  motors off, and the node inactive: it does not take off again by itself.

Chunking policies (ACT, diffusion) run with `async_inference:=true` (default): a background thread predicts the
next chunk once `prefetch_steps` (default: half of n_action_steps) of the current one are left, so a control
period never waits on the network; a late chunk leaves the old one playing (`infer_late_chunks`,
`infer_late_steps`, `infer_starved_steps` in the diagnostics, and a warning). `async_inference:=false` predicts
in the control step (what `robolearn bench ros-loop-latency --sync` measures).

Diagnostics (`/diagnostics`, diagnostic_msgs/DiagnosticArray) carry the state, the last fault (naming the input
or term), inference and step latency (p50/p99/max), deadline misses and watchdog trips. Start-up problems (bad
topic map, malformed manifest, a term the robot cannot provide) end the process with exit code 2 and one line
naming the key or term.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from robolearn_ros.adapters import Adapter, SafeCommand
from robolearn_ros.messages import ConfigError, run_node
from robolearn_ros.topic_map import TopicMap, load_topic_map

INACTIVE, ACTIVE, FAULT, ESTOP, STOPPING = "inactive", "active", "fault", "estop", "stopping"
LANDING = "landing"
FLYING = (ACTIVE, LANDING)  # the policy is in control


class Core:
    """The ROS-free part of the node: runtime + adapter + watchdog + state machine (unit-testable)."""

    def __init__(self, runtime: Any, topic_map: TopicMap, *, rate_hz: float, watchdog_periods: int,
                 action_low: float | None, action_high: float | None, clock_jump_s: float) -> None:
        self.rt = runtime
        self.map = topic_map
        self.adapter: Adapter = topic_map.adapter(runtime.manifest, topic_map.options, set(topic_map.outputs))
        self.period = 1.0 / rate_hz
        self.watchdog_periods = watchdog_periods
        self.clock_jump_s = clock_jump_s
        m = runtime.manifest["action"]
        low, high = float(m["low"]), float(m["high"])
        if action_low is not None:
            low = max(low, action_low)
        if action_high is not None:
            high = min(high, action_high)
        if not low < high:
            raise ConfigError(f"parameters action_low/action_high leave no range inside the manifest's "
                              f"[{m['low']}, {m['high']}]")
        lo, hi = self.adapter.offset + self.adapter.scale * low, self.adapter.offset + self.adapter.scale * high
        self.phys_lo, self.phys_hi = np.minimum(lo, hi), np.maximum(lo, hi)
        self.norm_lo, self.norm_hi = low, high
        self.msgs: dict[str, Any] = dict.fromkeys(topic_map.inputs)
        self.stale: dict[str, bool] = dict.fromkeys(topic_map.inputs, True)  # no message yet counts as stale
        self.last_input_t: dict[str, float | None] = dict.fromkeys(topic_map.inputs)
        self.state = INACTIVE
        self.fault = ""
        self.fault_t = 0.0
        self.last_cmd: np.ndarray | None = None
        self.cut = False  # the landing touched down: motors off
        self.land_t = 0.0
        self.required = [s for s in topic_map.inputs if topic_map.adapter.INPUTS[s].required]
        self.counts = {"cycles": 0, "deadline_misses": 0, "watchdog_trips": 0, "faults": 0, "invalid_inputs": 0,
                       "clock_jumps": 0, "clamped": 0, "safe_commands": 0, "motors_off": 0}
        self.trip_periods: float | None = None  # node-clock delay from the last input to the last watchdog trip
        self.step_ms: deque[float] = deque(maxlen=2000)
        self._last_clock: tuple[float, float] | None = None

    # ---- inputs

    def on_message(self, slot: str, msg: Any, now: float) -> None:
        """Store the latest message of an input slot."""
        self.msgs[slot] = msg
        self.stale[slot] = False
        self.last_input_t[slot] = now

    def on_watchdog(self, slot: str, now: float) -> bool:
        """The slot's watchdog timer ran out (no message for `watchdog_periods` periods); True if this tripped."""
        self.stale[slot] = True
        if self.state not in FLYING or slot not in self.required:
            return False
        last = self.last_input_t[slot]
        self.counts["watchdog_trips"] += 1
        self.trip_periods = None if last is None else (now - last) / self.period
        what = "no message yet" if last is None else f"no message for {self.watchdog_periods} control periods"
        self.set_fault(f"input '{slot}' ({self.map.inputs[slot].topic}): {what}", now)
        return True

    def fresh(self) -> bool:
        """Every required input has a message and none is stale."""
        return all(self.msgs[s] is not None and not self.stale[s] for s in self.required)

    # ---- state machine

    def set_fault(self, reason: str, now: float) -> None:
        """Enter (or stay in) the fault state: safe action from now on."""
        self.counts["faults"] += self.state != FAULT
        if self.state in FLYING:
            self.state, self.fault_t = FAULT, now
        self.fault = reason

    def activate(self, now: float) -> str:
        """inactive/stopping → active (fault if inputs are not fresh yet; it resumes by itself)."""
        if self.state == ESTOP:
            return "e-stop is latched; call clear_estop first"
        self.rt.reset()
        self.adapter.reset_history()
        self.adapter.on_activate()
        self.state, self.fault, self.cut = ACTIVE, "", False
        return "active"

    def takeoff(self, now: float) -> str:
        """Activate with the Crazyflie goal ramping from the current position (needs a state estimate)."""
        if self.msgs.get("state") is None:
            return "no state estimate yet; not taking off"
        msg = self.activate(now)
        if msg == "active":
            self.adapter.takeoff(self.msgs, now)  # type: ignore[attr-defined]
            return "taking off"
        return msg

    def land(self, now: float) -> str:
        """Crazyflie: active → landing (the policy flies the goal down, then motors off); else the safe sequence."""
        if self.state == ACTIVE and self.fresh():
            self.adapter.land(self.msgs, now)  # type: ignore[attr-defined]
            self.state, self.land_t = LANDING, now
            return "landing"
        if self.state == LANDING:
            return "landing"
        return self.deactivate(now)

    def deactivate(self, now: float) -> str:
        """active/landing/fault → stopping (safe sequence, then inactive)."""
        if self.state in (*FLYING, FAULT):
            self.state, self.fault_t = STOPPING, now
        return self.state

    def estop(self, now: float) -> str:
        """Latch the safe action."""
        if self.state != ESTOP:
            self.state, self.fault_t, self.fault = ESTOP, now, "e-stop"
        return "e-stop latched"

    def clear_estop(self, now: float) -> str:
        """Release the e-stop; the node goes inactive (activate again to fly/move)."""
        if self.state == ESTOP:
            self.state, self.fault = INACTIVE, ""
            return "e-stop cleared; node inactive"
        return "e-stop was not latched"

    # ---- control

    def tick(self, now: float, mono: float, compute: bool) -> tuple[np.ndarray, SafeCommand | None] | None:
        """One control period: watchdog, clock check, then a command (or None: publish nothing)."""
        if self._last_clock is not None:
            jump = (now - self._last_clock[0]) - (mono - self._last_clock[1])
            if abs(jump) > self.clock_jump_s:
                self.counts["clock_jumps"] += 1
                if self.state in FLYING:
                    self.set_fault(f"clock jumped by {jump:+.3f} s", now)
                self._last_clock = (now, mono)
                return self._safe(now) if self.state in (FAULT, ESTOP, STOPPING) else None
        self._last_clock = (now, mono)
        stale = [s for s in self.required if self.msgs[s] is None or self.stale[s]]
        if stale and self.state in FLYING:
            self.on_watchdog(stale[0], now)
        if self.state == FAULT and not stale and self.fault.startswith(("input", "clock", "invalid")):
            self._resume()
        if self.state in FLYING:
            return self.policy_step(now) if compute else None
        if self.state in (FAULT, ESTOP, STOPPING):
            return self._safe(now)
        return None

    def _resume(self) -> None:
        self.rt.reset()
        self.adapter.reset_history()
        self.state, self.fault = ACTIVE, ""

    def policy_step(self, now: float) -> tuple[np.ndarray, SafeCommand | None] | None:
        """Observation → action → clamped physical command (or the safe action on invalid input)."""
        from robolearn.export.runtime import InvalidInputError

        if self.state not in FLYING:
            return self._safe(now) if self.state in (FAULT, ESTOP, STOPPING) else None
        if not self.fresh():
            return None
        if self.state == LANDING:
            if self.adapter.landed(self.msgs):  # type: ignore[attr-defined]
                self.state, self.fault_t, self.cut = STOPPING, now, True
                return self._safe(now)
            if now - self.land_t > self.adapter.land_s + float(self.adapter.opt["land_timeout_s"]):
                # not down yet: the safe sequence's open-loop descent (it skips the hover) ends in motors off
                self.state, self.fault_t = STOPPING, now - float(self.adapter.opt["hover_s"])
                self.fault = "landing timed out; open-loop descent"
                return self._safe(now)
        try:
            self.adapter.now = now
            obs = self.adapter.observation(self.msgs)
            a = self.rt.act(obs)
        except (InvalidInputError, ValueError) as e:
            self.counts["invalid_inputs"] += 1
            self.set_fault(f"invalid input: {e}", now)
            self.msgs = {s: (None if s in self.required else m) for s, m in self.msgs.items()}
            return self._safe(now)
        a = np.clip(a, self.norm_lo, self.norm_hi)
        cmd = self._clamp(self.adapter.offset + self.adapter.scale * a)
        self.adapter.record(self.adapter.normalized(cmd))
        self.counts["cycles"] += 1
        return cmd, None

    def _clamp(self, cmd: np.ndarray) -> np.ndarray:
        """The last guard: every published command lies inside the manifest's physical limits."""
        bad = ~np.isfinite(cmd)
        if bad.any():
            cmd = np.where(bad, self.last_cmd if self.last_cmd is not None else self.adapter.offset, cmd)
        out = np.clip(cmd, self.phys_lo, self.phys_hi)
        self.counts["clamped"] += int(bool((out != cmd).any()))
        self.last_cmd = out
        return out

    def _safe(self, now: float) -> tuple[np.ndarray, SafeCommand] | None:
        if self.last_cmd is None and all(self.last_input_t[s] is None for s in self.required):
            return None  # never heard the robot, never commanded it: publish nothing rather than guess
        sc = self.adapter.motors_off() if self.cut else None  # type: ignore[attr-defined]
        if sc is None and self.state == ESTOP:
            sc = self.adapter.estop_command()
        if sc is None:
            sc = self.adapter.safe(now - self.fault_t, self.msgs, self.fresh(), self.last_cmd)
        cmd = self._clamp(np.asarray(sc.physical, dtype=np.float64))
        self.adapter.record(self.adapter.normalized(cmd))
        self.counts["safe_commands"] += 1
        self.counts["motors_off"] += sc.motors_off
        if sc.done and (self.state == STOPPING or (self.state == FAULT and sc.phase == "landed")):
            self.state, self.fault = INACTIVE, ""  # on the ground, motors off: flying again takes a takeoff
        return cmd, sc


def main(argv: list[str] | None = None) -> int:
    """Console entry point `robolearn-policy-node` (`ros2 run robolearn_ros policy_node`)."""
    return run_node("policy_node", PolicyNode, close="close", argv=argv)


def _make_node_class() -> type:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
    from rclpy.node import Node
    from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from robolearn.core.errors import RobolearnError

    class _PolicyNode(Node):
        """rclpy wrapper around `Core`."""

        def __init__(self) -> None:
            super().__init__("policy_node")
            p = {
                "artifact": "", "topic_map": "", "rate_hz": 0.0, "trigger": "timer", "watchdog_periods": 2,
                "max_delta_per_step": 0.0, "action_low": -1.0, "action_high": 1.0, "autostart": True,
                "diagnostics_rate_hz": 2.0, "clock_jump_s": 0.25, "backend": "onnx", "threads": 1,
                "async_inference": True, "prefetch_steps": -1,
            }
            for k, v in p.items():
                self.declare_parameter(k, v)
            g = {k: self.get_parameter(k).value for k in p}
            if not g["artifact"]:
                raise ConfigError("parameter 'artifact' is required (path to an exported policy directory)")
            if not g["topic_map"]:
                raise ConfigError("parameter 'topic_map' is required (YAML: adapter, inputs, outputs, options)")
            if g["trigger"] not in ("timer", "input"):
                raise ConfigError(f"parameter 'trigger' is {g['trigger']!r}; choose 'timer' or 'input'")
            if int(g["watchdog_periods"]) < 1:
                raise ConfigError("parameter 'watchdog_periods' must be >= 1")
            tmap = load_topic_map(g["topic_map"])
            from robolearn.export.artifact import read_manifest
            from robolearn.export.runtime import PolicyRuntime

            try:
                # the manifest against the robot first: a term the robot cannot provide fails before any model loads
                manifest = read_manifest(g["artifact"])
                tmap.adapter(manifest, tmap.options, set(tmap.outputs))
                chunked = {}
                if manifest["network"]["kind"] != "mlp":  # ACT / diffusion: chunks predicted in the background
                    chunked = {"async_inference": bool(g["async_inference"]),
                               "prefetch_steps": None if int(g["prefetch_steps"]) < 0 else int(g["prefetch_steps"])}
                rt = PolicyRuntime.load(g["artifact"], backend=g["backend"], threads=int(g["threads"]),
                                        max_delta_per_step=g["max_delta_per_step"] or None, **chunked)
            except (RobolearnError, ValueError) as e:
                raise ConfigError(str(e)) from None
            if rt.image_inputs:  # adapters turn messages into the state vector; cameras need an image adapter
                raise ConfigError(f"artifact {g['artifact']} reads camera images ({', '.join(rt.image_inputs)}); "
                                  "the policy node feeds state-vector policies only")
            rate = float(g["rate_hz"]) or rt.control_rate_hz
            self.core = Core(rt, tmap, rate_hz=rate, watchdog_periods=int(g["watchdog_periods"]),
                             action_low=g["action_low"], action_high=g["action_high"],
                             clock_jump_s=float(g["clock_jump_s"]))
            self.trigger = g["trigger"]
            sensor = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=1,
                                reliability=QoSReliabilityPolicy.BEST_EFFORT)
            # The control path (state subscriptions, command publishers, control timer) is a second node that
            # run_node spins in its own thread. An rclpy executor rebuilds the wait set of all its entities on
            # every wake-up; with the services, watchdogs, diagnostics and parameter services of this node in it,
            # that was half of each 500 Hz step (profiled). This node resolves the topic names (namespace and
            # remaps); the helper ignores global arguments, so `-r __node:=NAME` renames this node only. The
            # control path has no QoS event handlers: the sensor QoS (best effort, volatile) is compatible with any
            # publisher, so the "incompatible QoS" warning they exist for cannot fire on it.
            self.io = Node(f"{self.get_name()}_io", namespace=self.get_namespace(), context=self.context,
                           use_global_arguments=False, start_parameter_services=False, enable_rosout=False)
            self.spin_alongside = [self.io]
            self._lock = threading.Lock()  # the two executor threads share `core`
            quiet_pub = PublisherEventCallbacks(use_default_callbacks=False)
            quiet_sub = SubscriptionEventCallbacks(use_default_callbacks=False)
            self.pubs = {slot: self.io.create_publisher(t.cls, self.resolve_topic_name(t.topic), 1,
                                                        event_callbacks=quiet_pub)
                         for slot, t in tmap.outputs.items()}
            self.subs, self.watchdogs = [], {}
            for slot, t in tmap.inputs.items():
                self.subs.append(self.io.create_subscription(t.cls, self.resolve_topic_name(t.topic),
                                                             self._on_input(slot), sensor, event_callbacks=quiet_sub))
                # the classic ROS watchdog: a timer of N periods, restarted by every message, fires only on silence
                self.watchdogs[slot] = self.io.create_timer(int(g["watchdog_periods"]) / rate, self._on_watchdog(slot),
                                                            clock=self.get_clock())
            latched = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=1,
                                 durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
            self.state_pub = self.create_publisher(String, "~/state", latched)
            self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self._Diag, self._Status, self._KV, self._String = DiagnosticArray, DiagnosticStatus, KeyValue, String
            for name, fn in (("activate", self.core.activate), ("deactivate", self.core.deactivate),
                             ("estop", self.core.estop), ("clear_estop", self.core.clear_estop)):
                self.create_service(Trigger, f"~/{name}", self._service(fn))
            if tmap.adapter.kind == "crazyflie":
                self.create_service(Trigger, "~/land", self._service(self.core.land))
                self.create_service(Trigger, "~/takeoff", self._service(self.core.takeoff))
            self._late_seen = 0
            self._primary = self.core.required[0]
            self._last_tick = None
            self._published_state = ""
            self._diag_every = max(1, round(rate / max(g["diagnostics_rate_hz"], 1e-3)))
            self._ticks = 0
            self.timer = self.io.create_timer(1.0 / rate, self._locked(self._tick), clock=self.get_clock())
            if self.trigger == "input":
                # while active, every state message runs the policy and the watchdog timers guard silence, so the
                # control-rate timer only runs when safe actions must be streamed; diagnostics and the clock check
                # run on a slow timer instead of waking the executor every period
                self.create_timer(1.0 / max(g["diagnostics_rate_hz"], 1e-3), self._locked(self._housekeeping))
            if g["autostart"]:
                self.core.activate(self._now())
            self._publish_state()
            runner = getattr(rt, "runner", None)
            mode = "" if runner is None else f", async chunk inference (prefetch {runner.prefetch} steps)"
            self.get_logger().info(f"{rt!r} at {rate:g} Hz, adapter '{tmap.adapter.kind}', trigger '{self.trigger}', "
                                   f"state {self.core.state}{mode}")

        def close(self) -> None:
            """Stop the runtime's inference thread (async chunk inference); log the step-time summary."""
            if hasattr(self.core.rt, "close"):
                self.core.rt.close()
            if self.core.step_ms:
                lat = np.asarray(self.core.step_ms)
                self.get_logger().info(
                    f"step time over the last {len(lat)} steps: p50 {np.percentile(lat, 50):.4f} ms, p99 "
                    f"{np.percentile(lat, 99):.4f} ms, max {lat.max():.4f} ms; "
                    f"deadline misses {self.core.counts['deadline_misses']}")

        def _locked(self, fn: Any) -> Any:
            def cb(*args: Any) -> Any:
                with self._lock:
                    return fn(*args)
            return cb

        def _now(self) -> float:
            return self.get_clock().now().nanoseconds * 1e-9

        def _on_input(self, slot: str) -> Any:
            def cb(msg: Any) -> None:
                t0 = time.perf_counter()
                with self._lock:
                    now = self._now()
                    self.core.on_message(slot, msg, now)
                    self.watchdogs[slot].reset()
                    if self.trigger == "input" and slot == self._primary and self.core.state in FLYING:
                        self._publish(self.core.policy_step(now), msg)
                        self._step_done(t0)
            return cb

        def _on_watchdog(self, slot: str) -> Any:
            def cb() -> None:
                with self._lock:
                    now = self._now()
                    if self.core.on_watchdog(slot, now):
                        self._publish(self.core._safe(now), None)  # the safe action now, not at the next tick
            return cb

        def _step_done(self, t0: float) -> None:
            dt = (time.perf_counter() - t0) * 1e3
            self.core.step_ms.append(dt)
            if dt > self.core.period * 1e3:
                self.core.counts["deadline_misses"] += 1

        def _tick(self) -> None:
            t0 = time.perf_counter()
            now = self._now()
            if self._last_tick is not None and t0 - self._last_tick > 1.5 * self.core.period:
                self.core.counts["deadline_misses"] += 1  # the control period itself was late
            self._last_tick = t0
            out = self.core.tick(now, time.monotonic(), compute=self.trigger == "timer")
            self._publish(out, self.core.msgs.get(self._primary))
            if out is not None and out[1] is None:
                self._step_done(t0)
            self._ticks += 1
            if self._ticks % self._diag_every == 0 and self.trigger == "timer":
                self._diagnostics()
            self._publish_state()

        def _housekeeping(self) -> None:
            out = self.core.tick(self._now(), time.monotonic(), compute=False)
            self._publish(out, None)
            self._diagnostics()
            self._publish_state()

        def _sync_timer(self) -> None:
            if self.trigger != "input":
                return
            if self.core.state in FLYING and not self.timer.is_canceled():
                self.timer.cancel()
            elif self.core.state not in FLYING and self.timer.is_canceled():
                self.timer.reset()

        def _publish(self, out: tuple[np.ndarray, SafeCommand | None] | None, src: Any) -> None:
            if out is None:
                return
            cmd, safe = out
            stamp = src.header.stamp if (safe is None and src is not None and hasattr(src, "header")) else \
                self.get_clock().now().to_msg()
            for slot, msg in self.core.adapter.commands(cmd, stamp, safe).items():
                self.pubs[slot].publish(msg)
            if safe is not None:
                self._publish_state()

        def _publish_state(self) -> None:
            self._sync_timer()
            s = self.core.state + (f": {self.core.fault}" if self.core.fault else "")
            if s != self._published_state:
                self._published_state = s
                self.state_pub.publish(self._String(data=s))
                if self.core.state in (FAULT, ESTOP):
                    self.get_logger().warn(f"state {s}")
                self._diagnostics()

        def _service(self, fn: Any) -> Any:
            def cb(request: Any, response: Any) -> Any:
                with self._lock:
                    response.message = fn(self._now())
                    response.success = not response.message.startswith(("e-stop is latched", "no state"))
                    self._publish_state()
                return response
            return cb

        def _diagnostics(self) -> None:
            c = self.core
            level = {ACTIVE: 0, LANDING: 0, INACTIVE: 0, STOPPING: 1, FAULT: 2, ESTOP: 2}[c.state]
            values = {"state": c.state, "fault": c.fault, **{k: str(v) for k, v in c.counts.items()}}
            rt_stats = c.rt.stats()
            for k, v in rt_stats.items():
                values[f"infer_{k}"] = f"{v:.4f}" if isinstance(v, float) else str(v)
            late = int(rt_stats.get("late_chunks", 0))
            if late > self._late_seen:  # async chunk inference fell behind: the old chunk kept playing
                self.get_logger().warn(
                    f"{late - self._late_seen} chunk(s) late (total {late}: {rt_stats.get('late_steps', 0)} steps "
                    f"played past n_action_steps, {rt_stats.get('starved_steps', 0)} steps held); chunk inference "
                    f"p99 {rt_stats.get('chunk_p99_ms', float('nan')):.1f} ms: raise prefetch_steps")
                self._late_seen = late
            if c.step_ms:
                lat = np.asarray(c.step_ms)
                values |= {"step_p50_ms": f"{np.percentile(lat, 50):.4f}",
                           "step_p99_ms": f"{np.percentile(lat, 99):.4f}", "step_max_ms": f"{lat.max():.4f}"}
            if c.trip_periods is not None:
                values["watchdog_trip_periods"] = f"{c.trip_periods:.3f}"
            status = self._Status(level=bytes([level]), name=f"{self.get_name()}: policy",
                                  hardware_id=c.rt.manifest["robot"],
                                  message=c.state + (f": {c.fault}" if c.fault else ""),
                                  values=[self._KV(key=k, value=v) for k, v in values.items()])
            arr = self._Diag(status=[status])
            arr.header.stamp = self.get_clock().now().to_msg()
            self.diag_pub.publish(arr)

    return _PolicyNode


def PolicyNode() -> Any:  # noqa: N802 - a factory standing in for the class (rclpy is imported lazily)
    """The rclpy node (built lazily so this module imports without rclpy)."""
    return _make_node_class()()


if __name__ == "__main__":
    sys.exit(main())
