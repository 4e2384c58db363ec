"""The full loop without hardware: simulated Franka-class arm (robolearn arm-reach) + policy_node over DDS.

ros2 launch robolearn_ros sim_arm.launch.py artifact:=runs/arm/artifact goal:="[0.5, 0.15, 0.3]"
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """sim_robot_node (arm task, joint states + goal out, forward position commands in) + policy_node (arm map)."""
    topic_map = PathJoinSubstitution([FindPackageShare("robolearn_ros"), "config", "arm.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("artifact", description="exported arm policy directory (joint_pos_target/delta)"),
        DeclareLaunchArgument("task", default_value="arm-reach", description="arm-reach, arm-lift, ..."),
        DeclareLaunchArgument("goal", default_value="[0.5, 0.0, 0.3]", description="reach goal, base frame [m]"),
        DeclareLaunchArgument("real_time_factor", default_value="1.0", description="< 1 if the CPU cannot keep up"),
        Node(package="robolearn_ros", executable="sim_robot_node", name="sim_robot_node", output="screen",
             parameters=[{"task": LaunchConfiguration("task"),
                          "goal": LaunchConfiguration("goal"),  # YAML-parsed: a list of floats
                          "real_time_factor": LaunchConfiguration("real_time_factor")}]),
        Node(package="robolearn_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[{"artifact": LaunchConfiguration("artifact"), "topic_map": topic_map, "trigger": "input",
                          "watchdog_periods": 10}]),
    ])
