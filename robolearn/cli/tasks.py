"""`robolearn tasks`: the registered tasks with their observation and action shapes."""

from __future__ import annotations

import argparse
import dataclasses
import json

from robolearn.envs import registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the `tasks` command."""
    p = sub.add_parser("tasks", help="list tasks with observation/action shapes", description=__doc__)
    p.add_argument("name", nargs="?", help="show one task in detail (observation terms, action terms, rewards)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    """Print the task table, or one task's full specification."""
    names = [args.name] if args.name else list(registry.TASKS)
    specs = {}
    for name in names:
        entry = registry.entry(name)
        cfg = dataclasses.replace(registry.cfg_class(name)(), num_envs=1)
        cls = registry.env_class(name)
        # tasks in another process (robosuite-*) declare their spec without starting it (nor needing its venv)
        specs[name] = (entry, cls.make_spec(cfg) if entry.extra == "robosuite" else cls(cfg).spec)
    if args.json:
        out = {
            name: {
                "description": entry.description,
                "obs_dims": spec.obs_dims,
                "obs_terms": {g: [t.to_dict() for t in terms] for g, terms in spec.obs_terms.items()},
                "action": spec.action.to_dict(),
                "reward_scales": spec.reward_scales,
                "robot": spec.robot,
            }
            for name, (entry, spec) in specs.items()
        }
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.name:
        entry, spec = specs[args.name]
        console.print(f"[bold]{args.name}[/bold]  {entry.description}  (robot: {spec.robot})")
        for group, terms in spec.obs_terms.items():
            table = Table(title=f"observation '{group}' ({spec.obs_dims[group]})", title_justify="left")
            for col in ("term", "dim", "unit", "description"):
                table.add_column(col)
            for t in terms:
                table.add_row(t.name, str(t.dim), t.unit, t.description)
            console.print(table)
        table = Table(title=f"action ({spec.action.dim}, {spec.action.mode}, {spec.action.rate_hz:g} Hz)",
                      title_justify="left")
        for col in ("term", "dim", "unit", "physical = offset + scale * a, a in [-1, 1]"):
            table.add_column(col)
        for t in spec.action.terms:
            table.add_row(t.name, str(t.dim), t.unit, f"{t.offset[0]:g} + {t.scale[0]:g} * a")
        console.print(table)
        console.print("reward terms × scale: " + ", ".join(f"{k} {v:g}" for k, v in spec.reward_scales.items()))
        return 0
    table = Table(title="robolearn tasks")
    for col in ("task", "policy obs", "critic obs", "action", "rate", "description"):
        table.add_column(col)
    for name, (entry, spec) in specs.items():
        dims = spec.obs_dims
        table.add_row(name, str(dims.get("policy")), str(dims.get("critic")),
                      f"{spec.action.dim} ({spec.action.mode})", f"{spec.action.rate_hz:g} Hz", entry.description)
    console.print(table)
    return 0
