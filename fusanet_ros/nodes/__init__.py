"""rclpy nodes: the depth node, the evaluator node, message writers and the shared node main."""
