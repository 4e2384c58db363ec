"""policy_node with artificially slow chunk inference: every chunk after the first takes SLOW_CHUNK_S longer.

The ROS tests start it like the console entry point (`python slow_chunk_policy_node.py --ros-args ...`) to show
that with asynchronous inference the control loop keeps its rate while a slow network runs. The first chunk (computed
in the control step at activation, before anything plays) is not slowed.
"""

from __future__ import annotations

import os
import sys
import time

from robolearn_ros.policy_node import main

from robolearn.export.chunked import ChunkPolicyRuntime

DELAY_S = float(os.environ.get("SLOW_CHUNK_S", "0.4"))
_real = ChunkPolicyRuntime.predict_chunk
_calls = {"n": 0}


def _slow(self, obs, noise=None, full=False):  # noqa: ANN001, ANN202 - the patched method's signature
    _calls["n"] += 1
    if _calls["n"] > 2:  # call 1 is the load-time self-check, call 2 the first chunk
        time.sleep(DELAY_S)
    return _real(self, obs, noise=noise, full=full)


ChunkPolicyRuntime.predict_chunk = _slow

if __name__ == "__main__":
    sys.exit(main())
