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
def hover_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Trained hover artifacts by action mode (BC of a PD expert, ~10 s each, made on first use).

    To test a real RL run instead, point ROBOLEARN_HOVER_ARTIFACT (rpm) or ROBOLEARN_HOVER_ARTIFACT_CTBR at its
    exported artifact directory.
    """
    made: dict[str, Path] = {}

    def get(mode: str = "rpm") -> Path:
        given = os.environ.get("ROBOLEARN_HOVER_ARTIFACT" + ("" if mode == "rpm" else f"_{mode.upper()}"))
        if given:
            return Path(given)
        if mode not in made:
            made[mode] = make_hover_artifact(tmp_path_factory.mktemp(f"hover-{mode}") / "artifact", mode=mode)
        return made[mode]

    return get


@pytest.fixture(scope="session")
def hover_artifact(hover_artifacts: Callable[[str], Path]) -> Path:
    """The rpm-mode hover artifact."""
    return hover_artifacts("rpm")


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


