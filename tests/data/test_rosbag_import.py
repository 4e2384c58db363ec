"""ROS 2 bags (MCAP and sqlite3 storage) written with rosbags, imported through a topic map and resampled."""

import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from robolearn.cli.main import main  # noqa: E402
from robolearn.data import DatasetError, EpisodeStore, validate  # noqa: E402
from robolearn.data.mcap import import_bags, load_bag_map  # noqa: E402

TS = get_typestore(Stores.ROS2_HUMBLE)
Time = TS.types["builtin_interfaces/msg/Time"]
Header = TS.types["std_msgs/msg/Header"]
JointState = TS.types["sensor_msgs/msg/JointState"]
Twist = TS.types["geometry_msgs/msg/Twist"]
Vector3 = TS.types["geometry_msgs/msg/Vector3"]
Image = TS.types["sensor_msgs/msg/Image"]

MAP = {"fps": 10, "topics": {
    "/joint_states": {"feature": "observation.state", "field": "position", "units": "rad", "names": ["j0", "j1"]},
    "/cmd_vel": {"feature": "action", "field": ["linear.x", "angular.z"]},
    "/camera/image_raw": {"feature": "observation.images.cam", "image": True},
}}


def write_bag(path, plugin, t0_s=100.0, seconds=1.0, offset=0.0):
    """Joint states at 50 Hz (position = [t, -t] since start), cmd_vel at 20 Hz, camera at 10 Hz."""
    with Writer(path, version=8, storage_plugin=plugin) as w:
        cj = w.add_connection("/joint_states", JointState.__msgtype__, typestore=TS)
        cc = w.add_connection("/cmd_vel", Twist.__msgtype__, typestore=TS)
        ci = w.add_connection("/camera/image_raw", Image.__msgtype__, typestore=TS)
        for k in range(int(seconds * 50) + 1):
            t = k / 50
            ns = int((t0_s + t) * 1e9)
            hdr = Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="base")
            msg = JointState(header=hdr, name=["j0", "j1"], position=np.array([t + offset, -t]),
                             velocity=np.zeros(2), effort=np.zeros(2))
            w.write(cj, ns, TS.serialize_cdr(msg, JointState.__msgtype__))
            if k % 5 == 0:  # 10 Hz: a 4x6 rgb8 image whose red channel counts frames
                img = np.zeros((4, 6, 3), np.uint8)
                img[..., 0] = k // 5
                im = Image(header=hdr, height=4, width=6, encoding="rgb8", is_bigendian=0, step=18,
                           data=img.reshape(-1))
                w.write(ci, ns + 1000, TS.serialize_cdr(im, Image.__msgtype__))
            if k % 5 == 2 or k % 5 == 0:  # ~20 Hz, irregular
                tw = Twist(linear=Vector3(x=t, y=0.0, z=0.0), angular=Vector3(x=0.0, y=0.0, z=2 * t))
                w.write(cc, ns + 500, TS.serialize_cdr(tw, Twist.__msgtype__))


@pytest.mark.parametrize("plugin", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_bag_topics_become_features_resampled_with_hold(tmp_path, plugin):
    bag = tmp_path / "bag"
    write_bag(bag, plugin)
    s = import_bags([bag], tmp_path / "out.zarr", MAP)
    assert s.fps == 10 and s.num_episodes == 1
    assert s.features["observation.state"].names == ("j0", "j1") and s.features["observation.state"].units == "rad"
    d = s.read_episode(0)
    n = len(d["action"])
    # frames start at the latest first message (the camera's, 1 us after the first joint state) and end by the
    # earliest last message
    assert n == 10
    t = 0.1 * np.arange(n) + 1e-6
    # zero-order hold: the latest joint state at or before each frame time (50 Hz -> the one at floor(t * 50) / 50)
    np.testing.assert_allclose(d["observation.state"][:, 0], np.floor(t * 50 + 1e-6) / 50, atol=1e-6)
    np.testing.assert_allclose(d["observation.state"][:, 1], -np.floor(t * 50 + 1e-6) / 50, atol=1e-6)
    assert d["action"].shape == (n, 2) and np.all(d["action"][:, 1] == 2 * d["action"][:, 0])
    assert d["observation.images.cam"].shape == (n, 4, 6, 3)
    # the grid starts on a camera message and steps at its rate: frame k holds image k
    assert d["observation.images.cam"][:, 0, 0, 0].tolist() == list(range(n))
    assert s.sessions[0]["source"] == "rosbag" and validate(tmp_path / "out.zarr") == []


def test_linear_alignment_interpolates_numeric_topics(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, StoragePlugin.MCAP)
    s = import_bags([bag], tmp_path / "lin.zarr", {**MAP, "align": "linear", "fps": 20})
    d = s.read_episode(0)
    t = 0.05 * np.arange(len(d["action"])) + 1e-6
    np.testing.assert_allclose(d["observation.state"][:, 0], t, atol=1e-5)  # position is t exactly on the line


def test_two_bags_two_episodes_via_cli_and_clear_errors(tmp_path, capsys):
    for i, plugin in enumerate([StoragePlugin.MCAP, StoragePlugin.SQLITE3]):
        write_bag(tmp_path / f"b{i}", plugin, t0_s=50.0 * (i + 1), seconds=0.5 + i, offset=10.0 * i)
    (tmp_path / "map.yaml").write_text(
        "fps: 10\ntopics:\n  /joint_states: {feature: observation.state, field: position}\n"
        "  /cmd_vel: {feature: action, field: [linear.x, angular.z]}\n")
    out = tmp_path / "two.zarr"
    assert main(["dataset", "convert", str(tmp_path / "b0"), str(out), "--from", "rosbag", "--bags",
                 str(tmp_path / "b1"), "--topics", str(tmp_path / "map.yaml")]) == 0
    s = EpisodeStore(out)
    assert s.num_episodes == 2 and [s.episode_length(e) for e in range(2)] == [5, 15]
    assert s.read_episode(1)["observation.state"][0, 0] >= 10.0
    # a topic the bag lacks, and a bad map: one error each, naming what is wrong
    with pytest.raises(DatasetError, match=r"has no topic \['/nope'\]"):
        import_bags([tmp_path / "b0"], tmp_path / "x.zarr", {"fps": 10, "topics": {"/nope": {"feature": "a"}}})
    with pytest.raises(DatasetError, match="unknown"):
        load_bag_map({"fps": 10, "topics": {"/a": {"feature": "a", "feild": "x"}}})
    with pytest.raises(DatasetError, match="not numeric"):
        import_bags([tmp_path / "b0"], tmp_path / "y.zarr",
                    {"fps": 10, "topics": {"/joint_states": {"feature": "a", "field": "name"}}})
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.zarr").exists()
