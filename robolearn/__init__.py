"""robolearn: robot learning and sim-to-real, from teleoperated demos to policies on ROS 2 robots."""

__version__ = "0.1.0"
