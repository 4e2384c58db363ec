from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from robolearn.core import logging as rl_logging
from robolearn.core.logging import RunLogger, new_run_dir


def read_scalars(tb_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_written(tmp_path):
    with RunLogger(tmp_path / "run", total=3, console=False) as log:
        for i in range(3):
            log.log(i * 10, {"reward": float(i), "episode/success": torch.tensor(0.5 * i), "n": i})
            log.update()
    scalars = read_scalars(tmp_path / "run" / "tb")
    assert scalars["reward"] == [(0, 0.0), (10, 1.0), (20, 2.0)]
    assert scalars["episode/success"] == [(0, 0.0), (10, 0.5), (20, 1.0)]
    assert log.latest == {"reward": 2.0, "episode/success": 1.0, "n": 2.0}


def test_non_tty_prints_compact_lines(tmp_path, capsys):
    # under pytest stderr is captured, i.e. not a terminal: compact lines, no live bar
    with RunLogger(tmp_path, total=4, unit="steps", desc="hover", tensorboard=False, interval=0.0) as log:
        log.log(0, {"reward": 1.25, "episode/success": 0.5, "loss": 3.0}, main=("reward", "success"))
        log.update(2)
        log.print("checkpoint saved")
        log.log(1, {"reward": 2.5})  # `main` is kept from the previous call
        log.update(2)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "checkpoint saved" in lines
    assert lines[-1].startswith("hover 4/4 steps (100%)")
    assert "reward 2.5  success 0.5" in lines[-1] and "loss" not in lines[-1]
    assert "eta" in lines[-1] and "\x1b[" not in err  # plain text, no escape codes
    assert not (tmp_path / "tb").exists()


def test_non_tty_interval_limits_lines(tmp_path, capsys):
    with RunLogger(tmp_path, total=100, tensorboard=False, interval=3600) as log:
        for _ in range(100):
            log.update()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1  # only the final line


def test_console_off_is_silent_except_print(tmp_path, capsys):
    with RunLogger(tmp_path, total=2, tensorboard=False, console=False, interval=0.0) as log:
        log.log(0, {"reward": 1.0}, main=("reward",))
        log.update(2)
        log.print("hello")
    assert capsys.readouterr().err == "hello\n"


def test_live_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats stderr as a terminal
    monkeypatch.setenv("COLUMNS", "120")
    with RunLogger(tmp_path, total=3, desc="hover", tensorboard=False) as log:
        assert log._progress is not None
        for i in range(3):
            log.log(i, {"reward": 4.0}, main=("reward",))
            log.update()
        log.print("a [bracketed] message")
    err = capsys.readouterr().err
    assert "a [bracketed] message" in err and "hover" in err and "3/3 it" in err and "reward 4" in err


def test_closes_on_exception_and_is_idempotent(tmp_path):
    with pytest.raises(RuntimeError), RunLogger(tmp_path, total=1, console=False) as log:
        log.log(0, {"x": 1.0})
        raise RuntimeError("boom")
    log.close()
    assert read_scalars(tmp_path / "tb")["x"] == [(0, 1.0)]


def test_non_scalar_metric_is_an_error(tmp_path):
    with RunLogger(tmp_path, total=1, tensorboard=False, console=False) as log:
        with pytest.raises(ValueError, match=r"metric 'obs' is not a scalar \(shape \(3,\)\)"):
            log.log(0, {"obs": torch.ones(3)})
        with pytest.raises(ValueError, match=r"metric 'name' is not a number"):
            log.log(0, {"name": "abc"})


def test_new_run_dir_unique_within_one_second(tmp_path, monkeypatch):
    monkeypatch.setattr(rl_logging.time, "strftime", lambda fmt: "20250101-120000")
    a = new_run_dir(tmp_path / "runs", "quadrotor-hover")
    b = new_run_dir(tmp_path / "runs", "quadrotor-hover")
    c = new_run_dir(tmp_path / "runs", "quadrotor/hover ppo")
    assert a.name == "quadrotor-hover-20250101-120000"
    assert b.name == "quadrotor-hover-20250101-120000-1"
    assert c.name == "quadrotor_hover_ppo-20250101-120000"
    assert a.is_dir() and b.is_dir() and c.parent == tmp_path / "runs"


def test_new_run_dir_real_clock(tmp_path):
    a, b = new_run_dir(tmp_path, "x"), new_run_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir()
    assert len(a.name) == len("x-YYYYmmdd-HHMMSS")


def test_import_is_light():
    code = "import sys, robolearn.core.logging; assert 'tensorboard' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
