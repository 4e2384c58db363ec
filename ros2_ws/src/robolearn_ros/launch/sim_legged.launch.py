"""The full loop without hardware: simulated Go1-class quadruped (robolearn quadruped-walk) + policy_node over DDS.

ros2 launch robolearn_ros sim_legged.launch.py artifact:=runs/quadruped/artifact
(then steer it: geometry_msgs/Twist on /cmd_vel)
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """sim_robot_node (quadruped task: joint states + IMU out, [q; kp; kd] in) + policy_node (legged map)."""
    topic_map = PathJoinSubstitution([FindPackageShare("robolearn_ros"), "config", "legged.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("artifact", description="exported quadruped-walk policy directory"),
        DeclareLaunchArgument("task", default_value="quadruped-walk", description="quadruped-walk or -hind-legs"),
        DeclareLaunchArgument("real_time_factor", default_value="1.0", description="< 1 if the CPU cannot keep up"),
        Node(package="robolearn_ros", executable="sim_robot_node", name="sim_robot_node", output="screen",
             parameters=[{"task": LaunchConfiguration("task"),
                          "real_time_factor": LaunchConfiguration("real_time_factor")}]),
        Node(package="robolearn_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[{"artifact": LaunchConfiguration("artifact"), "topic_map": topic_map, "trigger": "input",
                          "watchdog_periods": 10}]),
    ])
