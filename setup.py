"""ament_python package `fusanet`; also installs with plain pip (see README)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fusanet"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["fusanet_core", "fusanet_core.*", "fusanet_ros", "fusanet_ros.*"]),
    package_data={"fusanet_core": ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/sample/tum_rgbd", glob("sample/tum_rgbd/*")),
        (f"share/{PACKAGE}/sample/tum_rgbd_bag", glob("sample/tum_rgbd_bag/*")),  # `fusanet demo`'s bag
    ],
    # torch is deliberately unpinned here: requirements.txt pins the CPU build for this machine,
    # and users with their own CUDA build keep it.
    install_requires=["numpy", "opencv-python-headless", "pyyaml", "torch", "rosbags", "tqdm", "matplotlib>=3.7"],
    zip_safe=False,
    maintainer="FuSaNet team",
    maintainer_email="fusanet@example.com",
    description="Lightweight monocular metric depth for ROS 2 (FuSaNet)",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "fusanet = fusanet_ros.cli:main",
            "depth_node = fusanet_ros.nodes.depth_node:main",
            "evaluator_node = fusanet_ros.nodes.evaluator_node:main",
        ],
    },
)
