"""ament_python build of robolearn_ros (colcon build --packages-select robolearn_ros)."""

from glob import glob

from setuptools import setup

PACKAGE = "robolearn_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robolearn maintainers",
    maintainer_email="robolearn@example.org",
    description="ROS 2 nodes for robolearn policy artifacts",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"policy_node = {PACKAGE}.policy_node:main",
            f"sim_robot_node = {PACKAGE}.sim_robot_node:main",
            f"recorder_node = {PACKAGE}.recorder_node:main",
        ],
    },
)
