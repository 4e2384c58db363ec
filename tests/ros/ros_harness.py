"""Helpers for the ROS 2 tests: node subprocesses, bounded spinning, paths."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
CONFIG = Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "robolearn_ros" / "config"


class Proc:
    """A node subprocess, stopped with SIGINT like a user's Ctrl-C."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._f = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(args, env=env, stdout=self._f, stderr=subprocess.STDOUT)

    def stop(self, timeout: float = 15.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._f.close()
        return self.p.returncode

    def output(self) -> str:
        self._f.flush()
        return self.log.read_text(errors="replace")


def spin_until(node: object, cond: Callable[[], bool], timeout: float) -> bool:
    """Spin the test node until `cond()` holds or `timeout` seconds pass (a bound on waiting, not an assertion)."""
    import rclpy

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.02)
        if cond():
            return True
    return cond()


def have_exe(name: str) -> bool:
    return (BIN / name).exists() or shutil.which(name) is not None
