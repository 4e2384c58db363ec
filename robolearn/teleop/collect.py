"""The demo recorder: a device drives env 0 of a task; episodes go into an episode store as they are completed.

Per control step: poll the device (command + events), turn the command into the task action, record the frame
(observation before the step, action, reward, simulator state, raw command, intervention flag), step. Events:
START begins recording; STOP and SUCCESS end the episode and keep it (SUCCESS labels its last frame); DISCARD
drops it; INTERVENE toggles the per-frame `intervention` flag; QUIT ends the session (the episode in progress is
dropped). An episode the task ends itself (termination or time limit) is kept, labelled by the task's own
success metric where it has one, unless `only_success` is set.

Crash safety is the store's: only committed episodes are ever visible, so killing the recorder loses at most the
episode in progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robolearn.core.env import BatchedEnv
from robolearn.data.store import EpisodeWriter, Feature, Provenance, StorageOptions
from robolearn.data.video import VideoCodec
from robolearn.teleop import adapter
from robolearn.teleop.device import AXES, Device, Event

CAMERA_KEY = "observation.images.camera"
STATE_KEY = "sim.state"


def dataset_features(env: BatchedEnv, camera: bool, image_size: tuple[int, int] = (96, 96)
                     ) -> tuple[dict[str, Feature], list[tuple[str, tuple[int, ...]]]]:
    """Features of a collected dataset for `env`, and the simulator-state layout behind `sim.state`."""
    spec = env.spec
    feats: dict[str, Feature] = {}
    for group, terms in spec.obs_terms.items():
        names = tuple(f"{t.name}.{i}" if t.dim > 1 else t.name for t in terms for i in range(t.dim))
        units = tuple(t.unit for t in terms for _ in range(t.dim))
        feats[f"observation.{group}"] = Feature((len(names),), "float32", units=units, names=names,
                                                description=f"'{group}' observation group before the action")
    for term, shape in task_cameras(env).items():  # the policy's own cameras (`--set cameras=[...]`)
        cam = term.split("_", 1)[1]
        if term.startswith("rgb_"):
            feats[f"observation.images.{cam}"] = Feature(shape, "uint8", axes=("height", "width", "channel"),
                                                         description=f"policy camera '{cam}' before the action")
        else:
            feats[f"observation.depth.{cam}"] = Feature(shape, "float32", units="m", axes=("height", "width"),
                                                        description=f"policy depth camera '{cam}' before the action")
    if camera:
        h, w = image_size
        feats[CAMERA_KEY] = Feature((h, w, 3), "uint8", axes=("height", "width", "channel"),
                                    description="task camera before the action")
    a_names = tuple(f"{t.name}.{i}" if t.dim > 1 else t.name for t in spec.action.terms for i in range(t.dim))
    feats["action"] = Feature((spec.action.dim,), "float32", names=a_names,
                              description=f"normalized action in [{spec.action.low}, {spec.action.high}]")
    feats["reward"] = Feature((), "float32", description="reward of the step")
    feats["next.done"] = Feature((), "bool", description="the task ended the episode after this step")
    feats["next.success"] = Feature((), "bool", description="the episode ended in success after this step")
    feats["teleop.command"] = Feature((len(AXES),), "float32", names=AXES, description="raw device command")
    feats["teleop.intervention"] = Feature((), "bool", description="a person was in control this step")
    layout = adapter.state_layout(env)
    feats[STATE_KEY] = Feature((len(adapter.state_names(layout)),), "float64", names=adapter.state_names(layout),
                               description="env state before the action (robolearn.teleop.adapter.get_state)")
    return feats, layout


def task_cameras(env: BatchedEnv) -> dict[str, tuple[int, ...]]:
    """Image terms of obs["policy"] ("rgb_<cam>", "depth_<cam>") and their shapes; empty without cameras."""
    shapes = getattr(env, "image_shapes", None)
    return dict(shapes()) if callable(shapes) else {}


def frame_obs(env: BatchedEnv, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Env 0's observation as dataset features: groups as vectors, policy cameras as images (see dataset_features)."""
    frame = {}
    for g in env.spec.obs_terms:
        value = obs[g]
        if isinstance(value, Mapping):
            for term, x in value.items():
                if term != "state":
                    kind, cam = term.split("_", 1)
                    frame[f"observation.{'images' if kind == 'rgb' else 'depth'}.{cam}"] = x[0].detach().cpu().numpy()
            value = value["state"]
        frame[f"observation.{g}"] = value[0].detach().cpu().numpy()
    return frame


@dataclass
class CollectStats:
    """Counters of a collection session."""

    kept: int = 0
    discarded: int = 0
    successes: int = 0
    frames: int = 0
    steps: int = 0
    recording: bool = False
    intervening: bool = False
    episode_frames: int = 0
    quit: bool = False
    log: list[str] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        """What the live views show."""
        return {"kept": self.kept, "discarded": self.discarded, "successes": self.successes, "frames": self.frames,
                "recording": self.recording, "intervening": self.intervening, "episode_frames": self.episode_frames,
                "last": self.log[-1] if self.log else ""}


class Collector:
    """Runs one collection session; see the module docstring."""

    def __init__(self, env: BatchedEnv, device: Device, out: str | Path, *, episodes: int = 10,
                 provenance: Provenance | None = None, camera: bool | None = None, realtime: bool | None = None,
                 only_success: bool = False, max_steps: int | None = None, view_every: int = 2,
                 image_size: tuple[int, int] = (96, 96), durable: bool = True, video_crf: int | None = None,
                 on_update: Callable[[CollectStats], None] | None = None) -> None:
        if env.num_envs != 1:
            raise ValueError(f"collection drives one env; got num_envs={env.num_envs}")
        self.env, self.device, self.out = env, device, Path(out)
        self.episodes = episodes
        # the task's render() view, unless the policy's own cameras are configured (those are always recorded)
        self.camera = adapter.has_camera(env) and not task_cameras(env) if camera is None else camera
        self.realtime = device.realtime if realtime is None else realtime
        self.only_success = only_success
        self.max_steps = max_steps
        self.view_every = max(1, view_every)
        self.image_size = image_size
        self.features, self.layout = dataset_features(env, self.camera, image_size)
        self.fps = float(env.spec.action.rate_hz)
        self.provenance = provenance or Provenance(source="teleop", task=env.spec.name, robot=env.spec.robot,
                                                   device=device.name)
        self.durable = durable
        # a new dataset stores its cameras as per-episode MP4 (H.264 at this crf) instead of zstd arrays
        cams = tuple(k for k, f in self.features.items() if f.image and f.shape[-1] == 3)
        self.storage = StorageOptions(video=cams, video_codec=VideoCodec(crf=video_crf)) if video_crf is not None \
            else None
        self.on_update = on_update
        self.stats = CollectStats()

    def _camera(self) -> np.ndarray:
        frame = adapter.camera_frame(self.env, (self.image_size[1], self.image_size[0]))
        if frame.shape[:2] != self.image_size:
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize(self.image_size[::-1]))
        return frame[..., :3]

    def run(self) -> CollectStats:
        """Collect until `episodes` are kept, the device quits, or `max_steps` control steps have passed."""
        env, dev, st = self.env, self.device, self.stats
        writer = EpisodeWriter(self.out, self.features, self.fps, provenance=self.provenance, durable=self.durable,
                               storage=self.storage)
        pending: dict[str, Any] | None = None  # the last frame, held back so end-of-episode labels can reach it
        obs = env.reset()
        period = 1.0 / self.fps
        tick = time.monotonic()

        def finish(keep: bool, success: bool, why: str) -> None:
            nonlocal pending
            if pending is not None:
                pending["next.success"] = np.bool_(success)
                if keep:
                    writer.add_frame(pending)
            pending = None
            if keep and writer.frames_in_episode > 0:
                e = writer.end_episode()
                st.kept += 1
                st.successes += int(success)
                st.frames += st.episode_frames
                st.log.append(f"episode {e} kept ({st.episode_frames} frames, {why})")
            elif st.recording:
                writer.discard_episode()
                st.discarded += 1
                st.log.append(f"episode discarded ({st.episode_frames} frames, {why})")
            st.recording, st.episode_frames = False, 0
            if dev.needs_view:
                dev.show(None, st.status())  # the counters change now, not at the next view frame

        try:
            while st.kept < self.episodes and not st.quit and (self.max_steps is None or st.steps < self.max_steps):
                inp = dev.poll({"env": env, "obs": obs, "recording": st.recording, "status": st.status()})
                reset = False
                for ev in inp.events:
                    if ev is Event.START and not st.recording:
                        st.recording, st.episode_frames = True, 0
                    elif ev in (Event.STOP, Event.SUCCESS) and st.recording:
                        finish(True, ev is Event.SUCCESS, ev.value)
                        reset = True
                    elif ev is Event.DISCARD and st.recording:
                        finish(False, False, "discard")
                        reset = True
                    elif ev is Event.INTERVENE:
                        st.intervening = not st.intervening
                    elif ev is Event.QUIT:
                        st.quit = True
                if st.quit:
                    break
                if reset:
                    obs = env.reset()
                if inp.action is not None:
                    action = torch.as_tensor(inp.action, device=env.device).reshape(1, -1)
                else:
                    action, obs = adapter.command_to_action(env, obs, inp.command)
                if st.recording:
                    frame = frame_obs(env, obs)
                    if self.camera:
                        frame[CAMERA_KEY] = self._camera()
                    frame[STATE_KEY] = adapter.get_state(env, self.layout)
                    frame["teleop.command"] = np.asarray(inp.command, np.float32)
                    frame["teleop.intervention"] = np.bool_(st.intervening or inp.intervening)
                res = env.step(action)
                st.steps += 1
                done = bool(res.terminated[0] | res.truncated[0])
                if st.recording:
                    frame["action"] = env.action[0].detach().cpu().numpy()  # as applied (clamped to the limits)
                    frame["reward"] = np.float32(res.reward[0])
                    frame["next.done"] = np.bool_(done)
                    frame["next.success"] = np.bool_(False)
                    if pending is not None:
                        writer.add_frame(pending)
                    pending = frame
                    st.episode_frames += 1
                if done and st.recording:
                    ep = res.info.get("episode", {})
                    success = bool(ep["success"][0] > 0) if "success" in ep else not bool(res.terminated[0])
                    if self.only_success and not success:
                        finish(False, False, "the task ended it without success")
                    else:
                        finish(True, success, "success" if success else "the task ended it")
                obs = res.obs
                if dev.needs_view and st.steps % self.view_every == 0:
                    dev.show(adapter.jpeg(adapter.camera_frame(env)), st.status())
                if self.on_update is not None:
                    self.on_update(st)
                if self.realtime:
                    tick += period
                    delay = tick - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        tick = time.monotonic()
        finally:
            if st.recording:
                st.discarded += 1
                st.log.append("episode in progress dropped at the end of the session")
            writer.close()  # drops an unfinished episode; committed ones are already safe
        return st
