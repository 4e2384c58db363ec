"""Collection through the device interface into the store, `robolearn collect` killed mid-run, and replay."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from robolearn.cli.main import main
from robolearn.data import EpisodeStore, validate
from robolearn.envs.registry import TASKS, make
from robolearn.teleop.collect import STATE_KEY, Collector
from robolearn.teleop.device import Device, DeviceInput, Event
from robolearn.teleop.expert import ExpertDevice

EASY = dict(init_pos=0.2, init_max_angle_deg=10.0, init_lin_vel=0.2, init_ang_vel=0.2, episode_length_s=0.3)
SET = [a for k, v in EASY.items() if k != "episode_length_s" for a in ("--set", f"{k}={v}")]


class ScriptedPerson(Device):
    """Plays back a list of (command, events) per step, like a person pressing keys; then quits."""

    name = "scripted-person"
    realtime = False

    def __init__(self, script):
        self.script = list(script)

    def poll(self, context):
        if not self.script:
            return DeviceInput(events=[Event.QUIT])
        cmd, events = self.script.pop(0)
        c = np.zeros(7, np.float32)
        c[0] = cmd
        return DeviceInput(command=c, events=list(events))


def test_person_controls_start_discard_success_and_intervene(tmp_path):
    env = make("quadrotor-hover", num_envs=1, episode_length_s=5.0, **{k: v for k, v in EASY.items()
                                                                       if k != "episode_length_s"})
    S, D, Y, I, H = Event.START, Event.DISCARD, Event.SUCCESS, Event.INTERVENE, Event.STOP
    script = ([(0.0, [])] * 2 + [(1.0, [S])] + [(1.0, [])] * 4 + [(0.0, [D])]  # 5 frames, discarded
              + [(0.5, [S])] + [(0.5, [])] * 2 + [(0.5, [I])] + [(0.5, [])] * 2 + [(0.0, [Y])]  # 6 kept, success
              + [(0.0, [S])] + [(0.0, [])] * 2 + [(0.0, [H])]  # 3 kept, no label
              + [(0.0, [S])] + [(0.0, [])] * 3)  # in progress at quit: dropped
    st = Collector(env, ScriptedPerson(script), tmp_path / "d.zarr", episodes=10, camera=True).run()
    assert (st.kept, st.discarded, st.successes) == (2, 2, 1)
    s = EpisodeStore(tmp_path / "d.zarr")
    assert s.num_episodes == 2 and [s.episode_length(e) for e in range(2)] == [6, 3]
    e0 = s.read_episode(0)
    assert e0["next.success"].tolist() == [False] * 5 + [True]
    assert e0["teleop.intervention"].tolist() == [False] * 3 + [True] * 3
    assert e0["teleop.command"][:, 0].tolist() == [0.5] * 6
    assert e0["observation.images.camera"].shape == (6, 96, 96, 3) and e0["observation.images.camera"].any()
    assert not s.read_episode(1)["next.success"].any()
    assert s.sessions[0]["task"] == "quadrotor-hover" and s.sessions[0]["device"] == "scripted-person"
    assert validate(tmp_path / "d.zarr") == []
    # the person moved the goal (x command); the recorded observations see it, and replay re-applies it
    goal_x = e0["sim.state"][:, list(s.features["sim.state"].names).index("goal.0")]
    assert np.all(np.diff(goal_x) > 0)
    from robolearn.eval.replay import replay_episode

    r = replay_episode(s, 0, make("quadrotor-hover", num_envs=1), make("quadrotor-hover", num_envs=1))
    assert r.max_state_error == 0.0


def test_expert_collection_ends_episodes_with_the_task(tmp_path):
    env = make("quadrotor-hover", num_envs=1, **EASY)
    st = Collector(env, ExpertDevice(noise=0.02), tmp_path / "e.zarr", episodes=3, camera=False).run()
    s = EpisodeStore(tmp_path / "e.zarr")
    assert st.kept == s.num_episodes == 3 and "observation.images.camera" not in s.features
    for e in range(3):
        d = s.read_episode(e, ["next.done", "action"])
        assert d["next.done"][-1] and not d["next.done"][:-1].any()
        assert np.all(np.abs(d["action"]) <= 1.0)


def _cli_collect(out, episodes, extra=()):
    return [sys.executable, "-m", "robolearn.cli.main", "collect", "--task", "quadrotor-hover", "--device", "expert",
            "--out", str(out), "--episodes", str(episodes), "--episode-length", "0.3", *SET, *extra]


def test_killed_collect_loses_at_most_the_episode_in_progress(tmp_path):
    out = tmp_path / "k.zarr"
    rng = np.random.default_rng(0)
    committed = 0
    for round_ in range(3):
        proc = subprocess.Popen(_cli_collect(out, 10_000, ["--camera"]), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        target = committed + 1 + int(rng.integers(0, 3))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists():
                try:
                    if EpisodeStore(out).num_episodes >= target:
                        break
                except Exception:  # noqa: BLE001 - the store may not be created yet
                    pass
            time.sleep(0.05 + 0.1 * rng.random())
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL if round_ % 2 == 0 else signal.SIGTERM)
        proc.wait(30)
        assert validate(out) == [], f"round {round_}"
        n = EpisodeStore(out).num_episodes
        assert n >= max(target, committed)
        committed = n
    # the next session appends after the committed episodes
    assert main(["collect", "--task", "quadrotor-hover", "--device", "expert", "--out", str(out), "--episodes", "1",
                 "--episode-length", "0.3", "--camera", *SET]) == 0
    assert EpisodeStore(out).num_episodes == committed + 1


def test_replay_reproduces_recorded_states_and_detects_divergence(tmp_path, capsys):
    out = tmp_path / "r.zarr"
    assert main(["collect", "--task", "quadrotor-hover", "--device", "expert", "--out", str(out), "--episodes", "2",
                 "--episode-length", "0.3", "--noise", "0.05", *SET]) == 0
    capsys.readouterr()
    video, plot = tmp_path / "r.mp4", tmp_path / "r.png"
    assert main(["replay", str(out), "--json", "--video", str(video), "--plot", str(plot), "--policy", "expert"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["task"] == "quadrotor-hover" and rep["diverged"] == []
    assert all(e["max_state_error"] == 0.0 and e["max_pos_error_m"] == 0.0 for e in rep["episodes"])
    assert video.stat().st_size > 1000 and plot.stat().st_size > 1000
    pol = rep["policy"]
    assert 0.01 < pol["action_rmse"] < 0.1  # the expert without the recorded 0.05 noise
    assert {"success", "crash", "length_s"} <= set(pol["episodes"][0])

    # a tampered copy: the actions of episode 1 are off, so its re-simulated states drift
    from robolearn.data.store import EpisodeWriter
    bad = tmp_path / "bad.zarr"
    src = EpisodeStore(out)
    with EpisodeWriter(bad, src.features, src.fps) as w:
        for e in range(2):
            d = src.read_episode(e)
            if e == 1:
                d["action"] = np.clip(d["action"] + 0.3, -1, 1)
            w.add_episode(d)
    assert main(["replay", str(bad), "--task", "quadrotor-hover", "--episodes", "1"]) == 1
    text = capsys.readouterr().out
    assert "diverged (> 1e-06): [1]" in text


def test_replay_bad_input_is_one_clear_error(tmp_path, capsys):
    from robolearn.data.store import EpisodeWriter, Feature

    p = tmp_path / "plain.zarr"
    with EpisodeWriter(p, {"action": Feature((4,))}, 100.0, provenance={"task": "quadrotor-hover"}) as w:
        w.add_episode({"action": np.zeros((3, 4), np.float32)})
    assert main(["replay", str(p)]) == 2
    assert f"dataset '{p}', key '{STATE_KEY}': has no simulator state" in capsys.readouterr().err
    assert main(["replay", str(p), "--episodes", "4"]) == 2
    assert "out of range" in capsys.readouterr().err


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_registered_task_can_be_collected_and_replayed(tmp_path, task):
    """Registry-wide: a person's commands (through the task's teleop mapping or the fallback) become an episode
    that validates and replays without divergence."""
    from robolearn.core.errors import MissingExtraError
    from robolearn.eval.replay import replay_episode

    try:
        env = make(task, num_envs=1)
    except MissingExtraError as e:
        pytest.skip(str(e))
    script = [(0.0, [Event.START])] + [(0.3, [])] * 5 + [(0.0, [Event.STOP])]
    st = Collector(env, ScriptedPerson(script), tmp_path / "t.zarr", episodes=1).run()
    s = EpisodeStore(tmp_path / "t.zarr")
    assert st.kept == s.num_episodes == 1 and s.episode_length(0) >= 5 and validate(tmp_path / "t.zarr") == []
    r = replay_episode(s, 0, make(task, num_envs=1), make(task, num_envs=1))
    assert r.max_state_error == 0.0


def test_view_adds_the_page_to_any_device():
    pytest.importorskip("aiohttp")
    from robolearn.teleop.browser import BrowserDevice
    from robolearn.teleop.device import WithView

    person = ScriptedPerson([(0.5, [Event.START])])
    page = BrowserDevice(port=0)
    dev = WithView(person, page)
    page.handle({"type": "key", "key": "w", "down": True})
    page.handle({"type": "event", "name": "success"})
    inp = dev.poll({})
    assert inp.command[0] == 1.0 and inp.events == [Event.START, Event.SUCCESS] and dev.needs_view


def test_replay_evaluates_an_exported_artifact_on_the_recorded_starts(tmp_path, capsys):
    from hover_artifact import make_hover_artifact

    out = tmp_path / "r.zarr"
    assert main(["collect", "--task", "quadrotor-hover", "--device", "expert", "--out", str(out), "--episodes", "2",
                 "--episode-length", "0.5", *SET]) == 0
    artifact = make_hover_artifact(tmp_path / "artifact")
    capsys.readouterr()
    assert main(["replay", str(out), "--json", "--policy", str(artifact)]) == 0
    pol = json.loads(capsys.readouterr().out)["policy"]
    # the artifact is a clone of a (memoryless) PD, the demos come from the task's expert: close, not equal
    assert 0.0 < pol["action_rmse"] < 0.5
    assert len(pol["episodes"]) == 2 and all(e["crash"] == 0 for e in pol["episodes"])


def test_policy_cameras_are_recorded_as_the_policy_sees_them_and_feed_imitation(tmp_path, capsys):
    """`--set cameras=[...]`: each policy camera becomes observation.images.<cam> at the task's image size (here as
    MP4), next to the state vector; an imitation run on it evaluates with the same cameras rendered in the batch."""
    from robolearn.sim.backend import import_mujoco

    pytest.importorskip("av")
    try:
        import_mujoco()  # picks EGL on a machine without a display, before anything else imports mujoco
    except ImportError:
        pytest.skip("mujoco is not installed (pip install -e '.[sim]')")
    out = tmp_path / "cam.zarr"
    cams = ["--set", "cameras=[wrist]", "--set", "image_size=[32,48]"]
    assert main(["collect", "--task", "arm-reach", "--device", "expert", "--out", str(out), "--episodes", "1",
                 "--video", "--episode-length", "0.6", *cams]) == 0
    s = EpisodeStore(out)
    assert s.is_video("observation.images.wrist") and "observation.images.camera" not in s.features
    ep = s.read_episode(0)
    assert ep["observation.images.wrist"].shape[1:] == (32, 48, 3) and ep["observation.images.wrist"].std() > 0
    assert ep["observation.policy"].shape[1] == make("arm-reach", num_envs=1).spec.obs_dims["policy"]
    assert main(["dataset", "stats", str(out)]) == 0
    capsys.readouterr()
    flags = ["--policy.dim-model", "16", "--policy.n-heads", "2", "--policy.dim-feedforward", "32",
             "--policy.n-encoder-layers", "1", "--policy.n-vae-encoder-layers", "1", "--policy.chunk-size", "4",
             "--policy.backbone-width", "4"]
    rc = main(["train", "act", "--dataset", str(out), "--task", "arm-reach", *cams, "--steps", "2", "--batch-size",
               "4", "--eval-episodes", "2", "--threads", "1", "--run-dir", str(tmp_path / "run"), "--quiet", *flags])
    assert rc == 0 and json.loads(capsys.readouterr().out)["eval/episodes"] == 2.0
    # a camera size the task does not render is refused before training, naming the key and the fix
    rc = main(["train", "act", "--dataset", str(out), "--task", "arm-reach", "--set", "cameras=[wrist]", "--steps",
               "1", "--quiet", "--run-dir", str(tmp_path / "run2"), *flags])
    assert rc == 2 and "key 'observation.images.wrist': dataset images are (32, 48, 3)" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["arm-lift", "push-t"])
def test_recorded_state_of_a_mujoco_task_restores_its_physics(task):
    """sim.state carries the MuJoCo integration state (and the randomized parameters): replay starts from it."""
    import torch

    from robolearn.sim.backend import import_mujoco
    from robolearn.teleop import adapter

    try:
        import_mujoco()
    except ImportError:
        pytest.skip("mujoco is not installed")
    env, other = make(task, num_envs=2, seed=1), make(task, num_envs=2, seed=99)
    env.reset()
    other.reset()
    layout = adapter.state_layout(env)
    assert layout[0][0] == adapter.PHYSICS
    for _ in range(3):
        env.step(torch.zeros(2, env.spec.action.dim))
    adapter.set_state(other, layout, adapter.get_state(env, layout, 1), index=0)
    a = torch.rand(env.spec.action.dim) * 2 - 1
    for _ in range(5):
        env.step(a.expand(2, -1))
        other.step(a.expand(2, -1))
    np.testing.assert_array_equal(other.sim.get_state()[0].numpy(), env.sim.get_state()[1].numpy())
