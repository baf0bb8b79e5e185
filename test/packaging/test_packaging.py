"""Packaging: package.xml declares what the code imports, setup.py/requirements.txt agree, the Makefile.

`colcon test` runs pytest only when setup.py names it in its `test` extra; rosdep installs only
what package.xml declares; pip installs only what requirements.txt names.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
from unittest import mock
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLED_CODE = ["fusanet_core", "fusanet_ros", "launch"]
OWN = {"fusanet_core", "fusanet_ros"}
# Python libraries: import name -> rosdep key in package.xml, pip name in requirements.txt
PYTHON_DEPENDENCIES = {
    "numpy": ("python3-numpy", "numpy"),
    "cv2": ("python3-opencv", "opencv-python-headless"),
    "yaml": ("python3-yaml", "pyyaml"),
    "torch": ("python3-pytorch-pip", "torch"),
    "rosbags": ("python3-rosbags-pip", "rosbags"),
    "tqdm": ("python3-tqdm", "tqdm"),
    "matplotlib": ("python3-matplotlib", "matplotlib"),
    "PIL": ("python3-pil", "pillow"),
}
# Optional imports not under `try: ... except ImportError` (those are skipped): `fusanet export`'s extras.
OPTIONAL = {"onnx", "onnxruntime"}
NO_WHEEL = {"launch", "launch_ros"}  # real ROS 2 only; pip installs use fusanet's runner


def _guarded(tree: ast.AST) -> set[int]:
    """Return the ids of import nodes inside `try: ... except ImportError` (optional dependencies)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h.type) for h in node.handlers):
            imports = (n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom)))
            guarded |= {id(n) for n in imports}
    return guarded


def _catches_import_error(kind: ast.expr | None) -> bool:
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def _top_level_imports(paths: list[str]) -> dict[str, set[str]]:
    """Return top-level module -> files importing it (absolute imports at any depth, not the optional ones)."""
    found: dict[str, set[str]] = {}
    for folder in paths:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            optional = _guarded(tree)
            for node in ast.walk(tree):
                if id(node) in optional:
                    continue
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def _depends(tag: str) -> set[str]:
    return {e.text.strip() for e in _package_xml().iter(tag) if e.text}


def _requirement_names() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def _setup_kwargs() -> dict:
    with mock.patch("setuptools.setup") as setup, mock.patch("sys.argv", ["setup.py"]):
        import runpy

        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return setup.call_args.kwargs


def _third_party_imports() -> dict[str, set[str]]:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    # a fallback import of a newer stdlib module (e.g. `compression` on 3.14) or its backport
    stdlib |= {"compression", "backports"}
    return {m: files for m, files in _top_level_imports(INSTALLED_CODE).items() if m not in stdlib | OWN}


def test_package_xml_declares_every_import() -> None:
    exec_depends = _depends("exec_depend")
    missing = []
    for module, files in sorted(_third_party_imports().items()):
        if module in OPTIONAL:
            continue
        key = PYTHON_DEPENDENCIES[module][0] if module in PYTHON_DEPENDENCIES else module
        if key not in exec_depends:
            missing.append(f"{key} (imported as {module} by {', '.join(sorted(files))})")
    assert not missing, "package.xml lacks <exec_depend> for:\n  " + "\n  ".join(missing)


def test_requirements_install_every_import_on_the_pip_route() -> None:
    requirements = _requirement_names()
    missing = []
    for module in sorted(_third_party_imports()):
        if module in NO_WHEEL:
            continue
        if module in PYTHON_DEPENDENCIES:
            name = PYTHON_DEPENDENCIES[module][1]
        elif module in OPTIONAL:
            continue
        else:
            name = "ros-kilted-" + module.replace("_", "-")
        if name not in requirements:
            missing.append(f"{name} (for import {module})")
    assert not missing, "requirements.txt lacks:\n  " + "\n  ".join(missing)


def test_every_ros_exec_depend_has_a_wheel_in_requirements() -> None:
    python_keys = {key for key, _ in PYTHON_DEPENDENCIES.values()}
    ros = _depends("exec_depend") - python_keys - NO_WHEEL
    requirements = _requirement_names()
    missing = sorted(p for p in ros if "ros-kilted-" + p.replace("_", "-") not in requirements)
    assert not missing, f"package.xml exec_depends without a ros-kilted-* line in requirements.txt: {missing}"


def test_test_depends_are_used() -> None:
    test_depends = _depends("test_depend")
    assert {"python3-pytest", "ament_flake8", "ament_pep257"} <= test_depends
    tests = {p.stem for p in (ROOT / "test").rglob("test_*.py")}
    if "ament_copyright" in test_depends:
        assert "test_copyright" in tests, "ament_copyright declared but no test/test_copyright.py uses it"
    assert "test_lint" in tests


def test_setup_py_test_extra_makes_colcon_test_run_pytest() -> None:
    kwargs = _setup_kwargs()
    # colcon-core's PytestPythonTestingStep runs pytest when it is in tests_require or extras_require["test"]
    test_extra = kwargs.get("extras_require", {}).get("test", [])
    names = {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in test_extra}
    assert "pytest" in names
    assert names <= _requirement_names(), "setup.py's test extra names a package requirements.txt does not"


def test_setup_py_installs_every_config_and_launch_file() -> None:
    installed = {f for _, files in _setup_kwargs()["data_files"] for f in files}
    for folder in ("config", "launch"):
        files = {str(p.relative_to(ROOT)) for p in (ROOT / folder).iterdir() if p.is_file()}
        assert files <= installed, f"not installed: {sorted(files - installed)}"


def test_rviz_config_shows_the_node_outputs_under_the_default_namespace() -> None:
    yaml = pytest.importorskip("yaml")
    from fusanet_ros.startup.launch_description import DEFAULT_NAMESPACE, DEPTH_ARGUMENTS

    config = yaml.safe_load((ROOT / "config" / "fusanet.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"]: d["Class"] for d in displays if "Topic" in d}
    ns = "/" + DEFAULT_NAMESPACE.strip("/") if DEFAULT_NAMESPACE.strip("/") else ""
    image_topic = next(a.default for a in DEPTH_ARGUMENTS if a.name == "image_topic")
    assert topics == {
        image_topic: "rviz_default_plugins/Image",
        f"{ns}/depth/image": "rviz_default_plugins/Image",
        f"{ns}/confidence/image": "rviz_default_plugins/Image",
        f"{ns}/points": "rviz_default_plugins/PointCloud2",
        f"{ns}/salient_points": "rviz_default_plugins/PointCloud2",
    }
    installed = {f for _, files in _setup_kwargs()["data_files"] for f in files}
    assert "config/fusanet.rviz" in installed  # `rviz2 -d $(ros2 pkg prefix fusanet)/share/fusanet/config/...`


def test_opencv_is_the_headless_build_and_no_code_opens_a_window() -> None:
    assert "python3-opencv" in _depends("exec_depend")
    assert "opencv-python-headless" in _requirement_names()
    assert "opencv-python-headless" in _setup_kwargs()["install_requires"]
    assert "opencv-python" not in _requirement_names()
    # What makes the headless build enough: no code opens a window or waits for a key.
    gui = re.compile(r"cv2\.(imshow|namedWindow|waitKey|destroyAllWindows|setMouseCallback)\b")
    users = [str(p.relative_to(ROOT)) for folder in ("fusanet_core", "fusanet_ros", "bench")
             for p in (ROOT / folder).rglob("*.py") if gui.search(p.read_text())]
    assert not users, f"cv2 GUI calls (the headless OpenCV has none): {users}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_installs_from_the_repo_files_then_runs_pytest(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    make = ["make", "-n", "--no-print-directory", "-C", str(ROOT), "test", f"VENV={venv}"]
    # `make test PYTEST_ARGS=...` around this suite passes its variables down in MAKEFLAGS: drop them.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ARGS")}
    dry = subprocess.run(make, capture_output=True, text=True, timeout=30, env=env)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert any(f"-m venv {venv}" in line for line in lines)
    assert any("-r requirements.txt" in line for line in lines)
    assert any("--no-deps -e ." in line for line in lines)
    assert lines[-1] == f"{venv}/bin/python -m pytest -q"
    # once the stamp is newer than requirements.txt and setup.py, nothing is installed again
    venv.mkdir()
    (venv / ".fusanet-installed").touch()
    again = subprocess.run(make, capture_output=True, text=True, timeout=30, env=env)
    assert again.stdout.splitlines() == [f"{venv}/bin/python -m pytest -q"], again.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_ci_runs_make_test_and_make_demo_runs_the_demo(tmp_path: Path) -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".fusanet-installed").touch()  # installed: `make demo` only runs the demo
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DEMO_ARGS")}
    dry = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "demo", f"VENV={venv}"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split() == [f"{venv}/bin/fusanet", "demo", "--out", "out/demo"]


# Run in a child interpreter: ROS packages (and the ament linters) cannot be imported there.
_WITHOUT_ROS = """
import importlib.abc, sys
ROS = ("rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "rcl_interfaces", "lifecycle_msgs", "rosgraph_msgs",
       "geometry_msgs", "builtin_interfaces", "ament_flake8", "ament_pep257", "ament_index_python")
class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ROS:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoRos())
import pytest
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "test"]))
"""


def test_the_suite_collects_without_ros() -> None:
    """Without rclpy and the message packages every ROS test skips at import; nothing errors."""
    result = subprocess.run([sys.executable, "-c", _WITHOUT_ROS], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in result.stdout.splitlines()[-1].lower()
    assert "test_depth_node.py" not in result.stdout  # skipped at import: no test of it collected
