"""Run a policy artifact on a robot: `ros2 launch robolearn_ros policy.launch.py artifact:=<dir> topic_map:=<yaml>`."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """policy_node with its artifact, topic map and the main safety parameters as launch arguments."""
    default_map = PathJoinSubstitution([FindPackageShare("robolearn_ros"), "config", "crazyflie_ctbr.yaml"])
    args = {
        "artifact": ("", "exported policy directory (manifest.json, policy.onnx, weights.safetensors)"),
        "topic_map": (default_map, "YAML: adapter, inputs, outputs, options"),
        "rate_hz": ("0.0", "control rate; 0 = the manifest's"),
        "trigger": ("timer", "timer: compute every period; input: compute on every state message"),
        "watchdog_periods": ("2", "safe action after this many periods without an input message"),
        "autostart": ("false", "activate at start-up (else call ~/activate or ~/takeoff)"),
        "async_inference": ("true", "ACT/diffusion: predict the next chunk in a background thread"),
        "prefetch_steps": ("-1", "ACT/diffusion: request the next chunk this many steps early; -1: n_action_steps/2"),
    }
    return LaunchDescription([
        *[DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in args.items()],
        Node(package="robolearn_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[{k: LaunchConfiguration(k) for k in args}]),
    ])
