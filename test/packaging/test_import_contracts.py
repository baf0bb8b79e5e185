"""The import graph: the import-linter contracts of `.importlinter` hold (what `lint-imports` checks).

Layers (fusanet_ros over fusanet_core; inside the core cli -> training -> evaluation -> inference |
datasets -> checkpoint -> model -> io -> geometry | config | device), no ROS import in the core and
no import circle. A broken contract fails this test, so `make test` and CI fail.
"""

from __future__ import annotations

import configparser
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"


def _lint_imports(config: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter", reason="import-linter is not installed: install requirements.txt")
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code, "--config", str(config), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_every_import_contract_is_kept() -> None:
    result = _lint_imports(CONFIG)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " 0 broken" in result.stdout


def test_the_contracts_cover_layers_ros_and_circles() -> None:
    config = configparser.ConfigParser()
    config.read(CONFIG)
    contracts = {name.split(":", 2)[2]: dict(config[name]) for name in config.sections() if name.count(":") == 2}
    assert {c["type"] for c in contracts.values()} >= {"layers", "forbidden", "acyclic_siblings"}
    core = contracts["core-layers"]["layers"].split()
    assert core.index("cli") < core.index("training") < core.index("evaluation") < core.index("inference")
    assert core.index("inference") < core.index("model") < core.index("geometry")
    assert {"rclpy", "fusanet_ros"} <= set(contracts["core-without-ros"]["forbidden_modules"].split())


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    """The tool really reads the graph: the reversed layer order must break."""
    config = configparser.ConfigParser()
    config.read(CONFIG)
    for name in list(config.sections()):
        if name.startswith("importlinter:contract:"):
            config.remove_section(name)
    config["importlinter:contract:reversed"] = {
        "name": "core over ros (wrong on purpose)", "type": "layers", "layers": "\nfusanet_core\nfusanet_ros"}
    reversed_config = tmp_path / "reversed.ini"
    with reversed_config.open("w") as handle:
        config.write(handle)
    result = _lint_imports(reversed_config)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:]
