"""How this dataset was written: by LeRobot 0.4.4 itself (`LeRobotDataset.create`, h264 video), numpy < 2.3.

Not run by the tests (lerobot is not a robolearn dependency): in a throwaway venv with lerobot 0.4.4,
`python make_dataset.py OUT_DIR`.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = Path(sys.argv[1])
shutil.rmtree(root, ignore_errors=True)
feats = {"observation.state": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]},
         "observation.images.cam": {"dtype": "video", "shape": (24, 32, 3), "names": ["height", "width", "channels"]},
         "observation.grid": {"dtype": "float32", "shape": (2, 3), "names": None},  # LeRobot's Array2D
         "action": {"dtype": "float32", "shape": (1,), "names": None}}
ds = LeRobotDataset.create("local/native", fps=10, features=feats, root=root, use_videos=True, vcodec="h264")
for e, n in enumerate((5, 8, 6)):
    for t in range(n):
        ds.add_frame({"observation.state": np.array([e, t], np.float32), "action": np.array([t * 0.5], np.float32),
                      "observation.grid": np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * t + 100 * e,
                      "observation.images.cam": np.full((24, 32, 3), 20 * t + 40 * e, np.uint8),
                      "task": ["wave", "point", "wave"][e]})
    ds.save_episode()
ds.finalize()
