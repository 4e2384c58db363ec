"""ROS 2 nodes for robolearn policy artifacts: policy_node, sim_robot_node, recorder_node.

The deployment nodes import only `robolearn.export` (the torch-free runtime) and `robolearn.core.errors`;
`sim_robot_node` is the exception, since it *is* a robolearn simulator exposed over ROS 2.
"""
