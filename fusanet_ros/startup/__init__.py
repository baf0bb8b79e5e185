"""Start-up: launch descriptions (shared by launch/*.launch.py), the process runner and the DDS probe."""
