"""`robolearn collect --task T --device D --out DATASET.zarr`: record demonstrations into an episode store.

Devices: expert (the task's scripted expert, optionally noisy: demos without a person), keyboard (this terminal),
gamepad (pygame/SDL), spacemouse (HID), browser (a local page with keyboard, gamepad and phone-tilt input, the
live camera view and episode buttons). Keys and buttons are in the mapping files of the top-level teleop/ folder.
Killing collect loses at most the episode in progress; appending to an existing dataset needs the same features.
"""

from __future__ import annotations

import argparse
import sys

from robolearn.core.config import parse_sets
from robolearn.core.errors import RobolearnError

DEVICES = ("expert", "keyboard", "gamepad", "spacemouse", "browser")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `collect` command."""
    p = sub.add_parser("collect", help="record teleoperated or scripted demonstrations", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="registered task (robolearn tasks)")
    p.add_argument("--device", required=True, choices=DEVICES)
    p.add_argument("--out", required=True, help="dataset directory (created, or appended to)")
    p.add_argument("--episodes", type=int, default=10, help="episodes to keep")
    p.add_argument("--operator", default="", help="who is recording (provenance)")
    p.add_argument("--note", default="", help="free-text note stored with the session")
    p.add_argument("--mapping", help="mapping file (default: teleop/<device>.yaml)")
    p.add_argument("--noise", type=float, default=0.0, help="expert: std of noise on the normalized action")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only-success", action="store_true", help="drop episodes the task ends without success")
    p.add_argument("--camera", action=argparse.BooleanOptionalAction, default=None,
                   help="record the camera view as observation.images.camera (default: when the task renders one)")
    p.add_argument("--image-size", type=int, nargs=2, default=[96, 96], metavar=("H", "W"))
    p.add_argument("--video", action="store_true",
                   help="store the camera as per-episode MP4 (H.264, --crf) instead of zstd arrays (new datasets)")
    p.add_argument("--crf", type=int, default=18, help="--video: H.264 quality (0 lossless with yuv444p ... 51)")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="run at the task's control rate (default: yes for people, no for the expert)")
    p.add_argument("--max-steps", type=int, help="stop after this many control steps")
    p.add_argument("--host", default="127.0.0.1", help="browser: address to serve on (0.0.0.0 for a phone)")
    p.add_argument("--port", type=int, default=8765, help="browser: port (0 picks a free one)")
    p.add_argument("--view", action="store_true",
                   help="also serve the browser page as live camera view and episode buttons for any device")
    p.add_argument("--episode-length", type=float, help="override the task's time limit [s]")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="env_set",
                   help="override a task config field, e.g. --set init_max_angle_deg=10 (YAML value)")


def make_device(args: argparse.Namespace) -> object:
    """The device named on the command line."""
    from robolearn.teleop.device import DeviceError

    name = args.device
    if name == "expert":
        from robolearn.teleop.expert import ExpertDevice

        return ExpertDevice(noise=args.noise, seed=args.seed)
    if name == "keyboard":
        from robolearn.teleop.keyboard import TerminalKeyboard

        return TerminalKeyboard(args.mapping or "keyboard")
    if name == "gamepad":
        from robolearn.teleop.gamepad import PygameGamepad

        return PygameGamepad(args.mapping or "gamepad")
    if name == "spacemouse":
        from robolearn.teleop.spacemouse import SpaceMouse

        return SpaceMouse(args.mapping or "spacemouse")
    if name == "browser":
        from robolearn.teleop.browser import BrowserDevice

        return BrowserDevice(host=args.host, port=args.port, keyboard=args.mapping or "keyboard")
    raise DeviceError(f"unknown device {name}")


def run(args: argparse.Namespace) -> int:
    """Collect and print the counters."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from robolearn.data.store import Provenance
    from robolearn.envs import registry
    from robolearn.teleop.collect import Collector

    if args.episodes <= 0:
        raise RobolearnError(f"--episodes must be positive, got {args.episodes}")
    overrides: dict[str, object] = {"num_envs": 1}
    if args.episode_length:
        overrides["episode_length_s"] = args.episode_length
    env_cfg = parse_sets(registry.cfg_class(args.task)(), args.env_set, source=f"--set (task '{args.task}')")
    env = registry.make(args.task, env_cfg, seed=args.seed, **overrides)
    device = make_device(args)
    if args.view and args.device != "browser":
        from robolearn.teleop.browser import BrowserDevice
        from robolearn.teleop.device import WithView

        device = WithView(device, BrowserDevice(host=args.host, port=args.port))
    prov = Provenance(source="teleop" if args.device != "expert" else "sim", task=args.task, robot=env.spec.robot,
                      device=args.device if args.device != "expert" or not args.noise
                      else f"expert (noise {args.noise:g})", operator=args.operator, note=args.note,
                      extra={"seed": args.seed})
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counters]}"), TimeElapsedColumn(), console=console,
                  disable=not console.is_terminal) as bar:
        job = bar.add_task(f"{args.task} via {args.device}", total=args.episodes, counters="")
        shown = [0]

        def update(st: object) -> None:
            rec = f"recording {st.episode_frames} frames" if st.recording else "waiting for start"
            bar.update(job, completed=st.kept, counters=f"kept {st.kept}  discarded {st.discarded}  "
                                                        f"success {st.successes}  {rec}")
            for line in st.log[shown[0]:]:
                (bar.console.print if console.is_terminal else print)(line)
            shown[0] = len(st.log)

        with device:
            if args.device == "browser" or args.view:
                print(f"teleop page: {device.url}  (open it in a browser; phone: --host 0.0.0.0)", file=sys.stderr)
            if args.device == "keyboard":
                print("keys: w/s a/d r/f move, q/e yaw, g start, y success, h stop, x discard, t intervene, "
                      "esc quit (teleop/keyboard.yaml)", file=sys.stderr)
            col = Collector(env, device, args.out, episodes=args.episodes, provenance=prov, camera=args.camera,
                            realtime=args.realtime, only_success=args.only_success, max_steps=args.max_steps,
                            image_size=tuple(args.image_size), video_crf=args.crf if args.video else None,
                            on_update=update)
            st = col.run()
        update(st)
    print(f"{args.out}: kept {st.kept}, discarded {st.discarded}, successes {st.successes}, "
          f"{st.frames} frames recorded this session")
    return 0
