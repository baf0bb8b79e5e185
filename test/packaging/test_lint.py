"""The ament linters, as `colcon test` runs them for ROS 2 packages: ament_flake8 and ament_pep257.

ament_flake8 takes this project's configuration from setup.cfg (section [flake8]: ament's rules,
120 columns, double quotes). ament_pep257 uses ament's convention plus PEP_257_EXTRA_IGNORES.
On failure the test lists the violations and their count per rule.
"""

from __future__ import annotations

from collections import Counter
import importlib.util
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["fusanet_core", "fusanet_ros", "launch", "bench", "test", "setup.py"]
# Added to ament's pep257 ignore list (D100-D107, D203, D212, D404):
#   D213  summary on the docstring's first line, as PEP 257 writes it (ament expects the second)
#   D406, D407, D413  numpy-style section layout; this project writes Google-style `Args:` sections
PEP_257_EXTRA_IGNORES = ["D213", "D406", "D407", "D413"]
VIOLATION = re.compile(r"^(?P<where>[^\s:][^:]*:\d+(?::\d+)?)(?::| in [^:]*:) ?(?P<code>[A-Z]+\d+)[: ]")


def _run(module: str, *args: str) -> tuple[int, str]:
    if importlib.util.find_spec(module.split(".")[0]) is None:
        pytest.fail(f"{module} is not installed: install requirements.txt (make test does)")
    result = subprocess.run([sys.executable, "-m", module, *args, *PATHS], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    return result.returncode, result.stdout + result.stderr


def _violations(output: str) -> list[tuple[str, str]]:
    found = []
    for line in output.splitlines():
        match = VIOLATION.match(line.strip())
        if match:
            found.append((match["code"], line.strip()))
    return found


def _report(tool: str, rc: int, output: str) -> str:
    violations = _violations(output)
    if not violations:  # failed without a parsable violation: show the tool's own output
        return f"{tool} exited {rc}:\n{output[-4000:]}"
    counts = Counter(code for code, _ in violations)
    table = "\n".join(f"  {code:6} {n}" for code, n in sorted(counts.items()))
    listing = "\n".join(line for _, line in violations[:200])
    more = f"\n  ... and {len(violations) - 200} more" if len(violations) > 200 else ""
    return f"{tool}: {len(violations)} violations\n{table}\n{listing}{more}"


def test_ament_flake8() -> None:
    rc, output = _run("ament_flake8.main", "--config", "setup.cfg")
    assert rc == 0, _report("ament_flake8 --config setup.cfg", rc, output)


def test_ament_pep257() -> None:
    rc, output = _run("ament_pep257.main", "--add-ignore", *PEP_257_EXTRA_IGNORES, "--")
    assert rc == 0, _report("ament_pep257", rc, output)


def test_violation_lines_are_recognised() -> None:
    """Guard the report: the line formats both tools print are parsed."""
    flake8 = "fusanet_core/cli.py:63:121: E501 line too long (130 > 120 characters)"
    pep257 = "test/test_x.py:97 in private function `_f`: D401: First line should be in imperative mood"
    assert _violations(f"{flake8}\n{pep257}\nchecking test/test_x.py\n75 files checked") == [
        ("E501", flake8), ("D401", pep257)]
