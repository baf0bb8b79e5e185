"""ROS-free evaluation: stamp pairing, depth registration, offline bag evaluation and the report."""
