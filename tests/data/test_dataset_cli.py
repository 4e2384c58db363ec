from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robolearn.cli.main import main
from robolearn.data.store import EpisodeStore, EpisodeWriter, Feature, Provenance, StorageOptions

FEATURES = {"cam": Feature((4, 4, 3), "uint8"), "state": Feature((2,), "float32", units="m", names=("x", "y"))}


def make(path: Path, n: int = 4, **feat: Feature) -> Path:
    rng = np.random.default_rng(0)
    with EpisodeWriter(path, {**FEATURES, **feat}, fps=15, storage=StorageOptions(chunk_frames={"cam": 4}),
                       provenance=Provenance(source="teleop", task="stack cubes", operator="ana")) as w:
        for _ in range(n):
            t = int(rng.integers(3, 9))
            w.add_episode({"cam": rng.integers(0, 256, (t, 4, 4, 3), dtype=np.uint8),
                           "state": rng.normal(size=(t, 2)).astype(np.float32),
                           **{k: np.zeros((t, *f.shape), f.dtype) for k, f in feat.items()}})
    return path


def test_info_validate_stats_merge_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make(tmp_path / "a.zarr")
    assert main(["dataset", "info", str(a)]) == 0
    out = capsys.readouterr().out
    assert "episodes  4" in out and "fps 15" in out and "stack cubes" in out and "zstd" in out and "x,y" in out
    assert main(["dataset", "info", str(a), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 4 and info["features"]["cam"]["chunk_frames"] == 4 and info["bytes_on_disk"] > 0
    assert main(["dataset", "validate", str(a)]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["dataset", "stats", str(a)]) == 0
    out = capsys.readouterr().out
    assert "q99" in out and "channel 2" in out and "saved" in out
    assert EpisodeStore(a).attributes["stats"]["episodes"] == 4
    assert main(["dataset", "merge", str(tmp_path / "m.zarr"), str(a), str(a)]) == 0
    assert EpisodeStore(tmp_path / "m.zarr").num_episodes == 8
    assert main(["dataset", "split", str(tmp_path / "m.zarr"), str(tmp_path / "tr.zarr"), str(tmp_path / "va.zarr"),
                 "--fraction", "0.75", "--seed", "3"]) == 0
    assert "6 episodes" in capsys.readouterr().out
    assert main(["dataset", "convert", str(a), str(tmp_path / "c.zarr"), "--compression", "blosc-zstd",
                 "--chunk-frames", "cam=2"]) == 0
    c = EpisodeStore(tmp_path / "c.zarr")
    assert c.chunk_frames("cam") == 2 and "stats" in c.attributes
    assert main(["dataset", "validate", str(tmp_path / "c.zarr")]) == 0


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_chunk_gives_one_line_naming_key_and_episode(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               damage: str) -> None:
    a = make(tmp_path / "a.zarr")
    s = EpisodeStore(a)
    start, _ = s.episode_bounds(3)
    chunk = a / "data" / "cam" / f"c.{start // 4}.0.0.0"
    if damage == "delete":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:20])
    for argv in (["dataset", "validate", str(a)], ["dataset", "stats", str(a)],
                 ["dataset", "merge", str(tmp_path / "m.zarr"), str(a)],
                 ["dataset", "split", str(a), str(tmp_path / "x.zarr"), str(tmp_path / "y.zarr")]):
        assert main(argv) == 2, argv
        line = error_line(capsys)
        assert line.startswith(f"error: dataset '{a}', key 'cam', episode") and "3" in line, line
        assert ("missing" if damage == "delete" else "cannot be decoded") in line
    if damage == "delete":
        assert main(["dataset", "info", str(a)]) == 2
        assert "key 'cam'" in error_line(capsys)
    assert not (tmp_path / "m.zarr").exists() and not (tmp_path / "x.zarr").exists()


def test_merge_schema_mismatch_and_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make(tmp_path / "a.zarr")
    b = make(tmp_path / "b.zarr", gripper=Feature((1,), "float32"))
    assert main(["dataset", "merge", str(tmp_path / "m.zarr"), str(a), str(b)]) == 2
    assert f"dataset '{b}', key 'gripper'" in error_line(capsys)
    assert main(["dataset", "info", str(tmp_path / "nope.zarr")]) == 2
    assert "does not exist" in error_line(capsys)
