"""Evaluation (ROS-free): metrics, dataset evaluation, stamp pairing, depth registration, scoring, reports.

`scoring` holds the live accumulator shared by `fusanet bag-eval` and the evaluator node, `report`
writes its files; `bag_eval` scores a bag offline (rosbags, no rclpy).
"""
