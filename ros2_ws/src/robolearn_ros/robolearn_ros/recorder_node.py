"""recorder_node: record chosen topics into a robolearn zarr dataset (teleop demos on real hardware).

    robolearn-recorder-node --ros-args -p dataset:=data/demos.zarr -p config:=config/recorder_crazyflie.yaml

The config names one dataset feature per topic (and which part of the message), and the frame rate:

    fps: 50
    features:
      state: {topic: /cf1/odom, type: nav_msgs/msg/Odometry}
      action: {topic: /cf1/cmd_motors, type: sensor_msgs/msg/JointState, field: velocity, dim: 4}

Every 1/fps seconds while an episode is recording, the latest message of every topic becomes one frame (a
zero-order hold; frames start once every topic has spoken). Services (std_srvs/Trigger): `~/start` opens an
episode, `~/stop` commits it, `~/discard` drops it. Writes go through robolearn's EpisodeWriter, so an episode
is visible only once committed and a killed recorder loses at most the episode in progress.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robolearn_ros.messages import ConfigError, message_class, run_node


def _odometry(m: Any) -> list[float]:
    p, q, v, w = m.pose.pose.position, m.pose.pose.orientation, m.twist.twist.linear, m.twist.twist.angular
    return [p.x, p.y, p.z, q.x, q.y, q.z, q.w, v.x, v.y, v.z, w.x, w.y, w.z]


def _pose(m: Any) -> list[float]:
    p, q = m.pose.position, m.pose.orientation
    return [p.x, p.y, p.z, q.x, q.y, q.z, q.w]


def _twist(m: Any) -> list[float]:
    return [m.linear.x, m.linear.y, m.linear.z, m.angular.x, m.angular.y, m.angular.z]


def _imu(m: Any) -> list[float]:
    o, w, a = m.orientation, m.angular_velocity, m.linear_acceleration
    return [o.x, o.y, o.z, o.w, w.x, w.y, w.z, a.x, a.y, a.z]


# message type -> (fixed names or None, extractor, fields that take `field`/`dim`)
FIXED: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "nav_msgs/msg/Odometry": (("x", "y", "z", "qx", "qy", "qz", "qw", "vx", "vy", "vz", "wx", "wy", "wz"), _odometry,
                              "m, quaternion, m/s (body), rad/s (body)"),
    "geometry_msgs/msg/PoseStamped": (("x", "y", "z", "qx", "qy", "qz", "qw"), _pose, "m, quaternion"),
    "geometry_msgs/msg/Twist": (("vx", "vy", "vz", "wx", "wy", "wz"), _twist, "m/s, rad/s"),
    "sensor_msgs/msg/Imu": (("qx", "qy", "qz", "qw", "wx", "wy", "wz", "ax", "ay", "az"), _imu,
                            "quaternion, rad/s, m/s^2"),
}
ARRAYS = {"sensor_msgs/msg/JointState": ("position", "velocity", "effort"),
          "std_msgs/msg/Float64MultiArray": ("data",), "std_msgs/msg/Float32MultiArray": ("data",)}


class FeatureSource:
    """One dataset feature fed by one topic."""

    def __init__(self, key: str, entry: Any, where: str) -> None:
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping with topic and type")
        unknown = sorted(set(entry) - {"topic", "type", "field", "dim", "description"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}")
        for k in ("topic", "type"):
            if not isinstance(entry.get(k), str):
                raise ConfigError(f"{where}: missing key '{k}'")
        self.key, self.topic, self.type_name = key, entry["topic"], entry["type"]
        self.cls = message_class(self.type_name, f"{where}.type")
        self.description = entry.get("description", f"{self.topic} ({self.type_name})")
        if self.type_name in FIXED:
            self.names, self.extract, self.units = FIXED[self.type_name]
            self.dim = len(self.names)
        elif self.type_name in ARRAYS:
            fields = ARRAYS[self.type_name]
            field = entry.get("field", fields[0])
            if field not in fields:
                raise ConfigError(f"{where}.field: '{field}' is not one of {list(fields)}")
            dim = entry.get("dim")
            if not isinstance(dim, int) or dim <= 0:
                raise ConfigError(f"{where}.dim: array messages need the number of values (a positive int)")
            self.dim, self.names, self.units = dim, None, ""
            self.extract = lambda m, f=field: list(getattr(m, f))
        else:
            raise ConfigError(f"{where}.type: '{self.type_name}' cannot be recorded; supported: "
                              f"{sorted([*FIXED, *ARRAYS])}")
        self.latest: np.ndarray | None = None
        self.bad = 0

    def on_message(self, msg: Any) -> None:
        """Keep the latest value (messages of the wrong length are counted and dropped)."""
        v = np.asarray(self.extract(msg), dtype=np.float32)
        if v.shape != (self.dim,):
            self.bad += 1
            return
        self.latest = v

    def feature(self) -> Any:
        """The dataset Feature this source writes."""
        from robolearn.data.store import Feature

        return Feature(shape=(self.dim,), dtype="float32", units=self.units, names=self.names,
                       description=self.description)


def load_config(path: str) -> tuple[float, dict[str, FeatureSource]]:
    """Fps and feature sources of a recorder config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: recorder config not found")
    raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or set(raw) - {"fps", "features"}:
        raise ConfigError(f"{p}: must be a mapping with keys 'fps' and 'features'")
    fps = raw.get("fps")
    if not isinstance(fps, int | float) or not fps > 0:
        raise ConfigError(f"{p}: key 'fps' must be a positive number")
    feats = raw.get("features")
    if not isinstance(feats, dict) or not feats:
        raise ConfigError(f"{p}: key 'features' must map feature names to topics")
    return float(fps), {k: FeatureSource(k, v, f"{p}: features.{k}") for k, v in feats.items()}


def main(argv: list[str] | None = None) -> int:
    """Console entry point `robolearn-recorder-node` (`ros2 run robolearn_ros recorder_node`)."""
    return run_node("recorder_node", _make_node_class(), close='close', argv=argv)


def _make_node_class() -> type:
    from rclpy.node import Node
    from std_srvs.srv import Trigger

    from robolearn.core.errors import RobolearnError
    from robolearn.data.store import EpisodeWriter

    class _RecorderNode(Node):
        def __init__(self) -> None:
            super().__init__("recorder_node")
            for k, v in {"dataset": "", "config": "", "task": "", "robot": "", "operator": "", "note": ""}.items():
                self.declare_parameter(k, v)
            g = {k: self.get_parameter(k).value for k in ("dataset", "config", "task", "robot", "operator", "note")}
            if not g["dataset"] or not g["config"]:
                raise ConfigError("parameters 'dataset' (zarr path) and 'config' (YAML) are required")
            fps, self.sources = load_config(g["config"])
            try:
                self.writer = EpisodeWriter(
                    g["dataset"], {k: s.feature() for k, s in self.sources.items()}, fps,
                    provenance={"source": "ros", "task": g["task"], "robot": g["robot"], "operator": g["operator"],
                                "note": g["note"], "device": "recorder_node"})
            except (RobolearnError, ValueError) as e:
                raise ConfigError(str(e)) from None
            for s in self.sources.values():
                self.create_subscription(s.cls, s.topic, s.on_message, 10)
            self.recording = False
            self.frames = 0
            for name, fn in (("start", self._start), ("stop", self._stop), ("discard", self._discard)):
                self.create_service(Trigger, f"~/{name}", self._service(fn))
            self.create_timer(1.0 / fps, self._tick)
            self.get_logger().info(f"recording {sorted(self.sources)} at {fps:g} fps into {g['dataset']}")

        def _service(self, fn: Any) -> Any:
            def cb(request: Any, response: Any) -> Any:
                try:
                    response.success, response.message = fn()
                except RobolearnError as e:
                    response.success, response.message = False, str(e)
                return response
            return cb

        def _start(self) -> tuple[bool, str]:
            if self.recording:
                return False, "already recording"
            self.recording, self.frames = True, 0
            return True, f"recording episode {self.writer.episode_index}"

        def _stop(self) -> tuple[bool, str]:
            if not self.recording:
                return False, "not recording"
            self.recording = False
            if self.frames == 0:
                return False, "no frames yet (does every topic publish?); nothing saved"
            ep = self.writer.end_episode()
            return True, f"saved episode {ep} ({self.frames} frames)"

        def _discard(self) -> tuple[bool, str]:
            if not self.recording:
                return False, "not recording"
            self.recording = False
            self.writer.discard_episode()
            return True, f"discarded {self.frames} frames"

        def _tick(self) -> None:
            if not self.recording or any(s.latest is None for s in self.sources.values()):
                return
            self.writer.add_frame({k: s.latest for k, s in self.sources.items()})
            self.frames += 1

        def close(self) -> None:
            if self.recording:
                self.writer.discard_episode()  # an unfinished episode is never committed
            self.writer.close()

    return _RecorderNode


if __name__ == "__main__":
    sys.exit(main())
