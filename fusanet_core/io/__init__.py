"""Files and messages as numpy arrays: images, previews, ROS bags and sensor_msgs (no torch, no rclpy)."""
