"""House rules that CI enforces: import direction, lint, types."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# hardware -> firmware -> contract <- pipeline <- review_opt_out; the `earmark` launcher
# above them all, imported by none.
ALLOWED = {
    "earmark": {"earmark", "hardware", "firmware", "contract", "pipeline", "review_opt_out"},
    "contract": {"contract"},
    "firmware": {"firmware", "contract"},
    "hardware": {"hardware", "firmware", "contract"},
    "pipeline": {"pipeline", "contract"},
    "review_opt_out": {"review_opt_out", "pipeline", "contract"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    bad = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) - ALLOWED[package])
        for path in (REPO / package).rglob("*.py")
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_ruff_is_clean() -> None:
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout


def test_mypy_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = [
        "hardware/install.sh",
        "scripts/bootstrap.sh",
        "scripts/dev_postgres.sh",
        "scripts/repeat_under_load.sh",
        "scripts/pi_stand_in_base.sh",
        ".ci/run",
    ]
    shellcheck = Path(sys.executable).parent / "shellcheck"
    done = subprocess.run([str(shellcheck), *scripts], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
