"""Message-type look-up and small numpy helpers shared by the nodes (no rclpy node code here)."""

from __future__ import annotations

import importlib
import math
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np


class ConfigError(Exception):
    """A node cannot start: bad topic map, parameter, artifact, or a term the robot cannot provide."""


def message_class(type_name: str, where: str) -> type:
    """`pkg/msg/Name` (or `pkg/srv/Name`) → the Python class; fails naming `where` and the type."""
    parts = type_name.split("/")
    if len(parts) != 3 or parts[1] not in ("msg", "srv") or not all(parts):
        raise ConfigError(f"{where}: type '{type_name}' is not of the form 'package/msg/Name'")
    try:
        module = importlib.import_module(f"{parts[0]}.{parts[1]}")
    except ImportError:
        raise ConfigError(f"{where}: unknown message package '{parts[0]}' in type '{type_name}' (is its ros-* "
                          "wheel or ROS 2 package installed?)") from None
    cls = getattr(module, parts[2], None)
    if cls is None:
        raise ConfigError(f"{where}: unknown message type '{type_name}'")
    return cls


def type_name(cls: type) -> str:
    """`pkg/msg/Name` of a message class."""
    module = cls.__module__.split(".")
    return f"{module[0]}/{module[1]}/{cls.__name__}"


def quat_to_rotmat(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Body-to-world rotation (3, 3) of a unit quaternion (ROS order x, y, z, w; normalized here)."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not n > 0:
        return np.full((3, 3), np.nan)
    x, y, z, w = x / n, y / n, z / n, w / n
    xx, yy, zz, xy, xz, yz, wx, wy, wz = x * x, y * y, z * z, x * y, x * z, y * z, w * x, w * y, w * z
    return np.array(
        [
            [1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)],
            [2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)],
            [2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)],
        ]
    )


def stamp_to_s(stamp: Any) -> float:
    """builtin_interfaces/Time → seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def s_to_stamp(t: float, msg: Any) -> Any:
    """Fill a builtin_interfaces/Time `msg` from seconds and return it."""
    sec = math.floor(t)
    msg.sec, msg.nanosec = int(sec), int(round((t - sec) * 1e9)) % 1_000_000_000
    return msg


def run_node(name: str, make_node: Callable[[], Any], close: str | None = None,
             argv: list[str] | None = None) -> int:  # fmt: skip
    """The console entry point of every node: build it, spin until SIGINT or shutdown, clean up.

    A ConfigError while building gives one line on stderr and exit code 2; after spinning, `node.<close>()` is
    called if `close` is given, then the node is destroyed and rclpy shut down.
    """
    import rclpy
    import rclpy.executors
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = make_node()
    except ConfigError as e:
        print(f"{name}: error: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    # a node may hand over helper nodes (`node.spin_alongside`) that get their own executor thread: the policy
    # node's control path, so that its wake-ups do not rebuild the wait set of every service and timer
    extra = list(getattr(node, "spin_alongside", ()))
    executors, threads = [], []
    for n in extra:
        executors.append(rclpy.executors.SingleThreadedExecutor(context=n.context))
        executors[-1].add_node(n)
        threads.append(threading.Thread(target=_spin_quietly, args=(executors[-1],),
                                        name=f"{n.get_name()}-executor", daemon=True))
        threads[-1].start()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if close is not None:
            getattr(node, close)()
        for ex, t in zip(executors, threads, strict=True):
            ex.shutdown(timeout_sec=2.0)
            t.join(timeout=2.0)
        for n in extra:
            n.destroy_node()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _spin_quietly(executor: Any) -> None:
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
