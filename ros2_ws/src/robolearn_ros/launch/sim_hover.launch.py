"""The full loop without hardware: simulated Crazyflie (robolearn quadrotor-hover) + policy_node over DDS.

ros2 launch robolearn_ros sim_hover.launch.py artifact:=runs/hover/artifact action_mode:=rpm
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """sim_robot_node + policy_node with the Crazyflie topic map that matches the action mode."""
    mode = LaunchConfiguration("action_mode")
    topic_map = PathJoinSubstitution([FindPackageShare("robolearn_ros"), "config",
                                      PythonExpression(["'crazyflie_", mode, ".yaml'"])])
    return LaunchDescription([
        DeclareLaunchArgument("artifact", description="exported quadrotor-hover policy directory"),
        DeclareLaunchArgument("action_mode", default_value="rpm", description="rpm or ctbr (must match the artifact)"),
        DeclareLaunchArgument("real_time_factor", default_value="1.0", description="< 1 if the CPU cannot keep up"),
        DeclareLaunchArgument("start_on_ground", default_value="false",
                              description="true: the drone waits on the floor, motors off; call "
                                          "/policy_node/takeoff and /policy_node/land"),
        Node(package="robolearn_ros", executable="sim_robot_node", name="sim_robot_node", output="screen",
             parameters=[{"task": "quadrotor-hover", "action_mode": mode,
                          "real_time_factor": LaunchConfiguration("real_time_factor"),
                          "start_on_ground": LaunchConfiguration("start_on_ground")}]),
        Node(package="robolearn_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[{"artifact": LaunchConfiguration("artifact"), "topic_map": topic_map, "trigger": "input",
                          "watchdog_periods": 10,
                          "autostart": PythonExpression(["'", LaunchConfiguration("start_on_ground"),
                                                         "'.lower() != 'true'"])}]),
    ])
