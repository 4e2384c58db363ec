"""ROS 2 test harness: real rclpy and Fast DDS on loopback, nodes as console-entry-point subprocesses.

Every test session gets its own ROS_DOMAIN_ID (and discovery stays on localhost), so parallel runs on one
machine cannot hear each other.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("rclpy") is None:  # ROS 2 wheels not installed (pip install -e '.[ros]'): skip them
    collect_ignore_glob = ["test_*.py"]

sys.path.insert(0, str(Path(__file__).parent))
from hover_artifact import make_hover_artifact  # noqa: E402
from ros_harness import BIN, Proc  # noqa: E402


@pytest.fixture(scope="session")
def ros_env() -> Iterator[dict[str, str]]:
    domain = str(random.Random(os.getpid() ^ time.time_ns()).randint(1, 100))
    old = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ["ROS_DOMAIN_ID"] = domain
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    yield dict(os.environ)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def hover_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained rpm-mode hover artifact (BC of the PD expert), or $ROBOLEARN_HOVER_ARTIFACT if set."""
    given = os.environ.get("ROBOLEARN_HOVER_ARTIFACT")
    if given:
        return Path(given)
    return make_hover_artifact(tmp_path_factory.mktemp("hover") / "artifact")


@pytest.fixture(scope="session")
def test_node(ros_env: dict[str, str]) -> Iterator[object]:
    """An rclpy node in the test process (context created after the domain is set)."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node(f"robolearn_test_{os.getpid()}")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


@pytest.fixture
def launch(ros_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(exe: str, **params: object) -> Proc:
        args = [str(BIN / exe), "--ros-args"]
        for k, v in params.items():
            args += ["-p", f"{k}:={v}"]
        p = Proc(args, ros_env, tmp_path / f"{exe}-{len(procs)}.log")
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


