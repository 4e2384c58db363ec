"""Record teleop demos: `ros2 launch robolearn_ros recorder.launch.py dataset:=demos.zarr config:=<yaml>`."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    """recorder_node; start/stop/discard episodes with its ~/start, ~/stop, ~/discard services."""
    names = ("dataset", "config", "task", "robot", "operator")
    return LaunchDescription([
        *[DeclareLaunchArgument(k, default_value="") for k in names],
        Node(package="robolearn_ros", executable="recorder_node", name="recorder_node", output="screen",
             parameters=[{k: LaunchConfiguration(k) for k in names}]),
    ])
