"""`robolearn bench act-train / diffusion-train` run for real at a tiny size, and the LeRobot comparison's failure
in an interpreter without lerobot is one error after the export (the timing script itself runs)."""

from __future__ import annotations

import json
import sys

import pytest

from robolearn.cli.main import main


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_train_bench_reports_throughput(kind, capsys):
    assert main(["bench", f"{kind}-train", "--json", "--steps", "1", "--batch-size", "4", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples_per_s"] > 0 and out["batch_size"] == 4 and out["params"] > 1_000_000
    assert "lerobot" not in out


def test_train_bench_against_lerobot_without_lerobot_is_one_error(capsys):
    argv = ["bench", "act-train", "--json", "--steps", "1", "--batch-size", "4", "--threads", "1",
            "--lerobot-python", sys.executable]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "LeRobot's act training failed" in err and "No module named 'lerobot'" in err, err
    assert main(["bench", "act-train", "--images", "--lerobot-python", sys.executable]) == 2
    assert "state-only" in capsys.readouterr().err
