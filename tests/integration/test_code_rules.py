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


PACKAGES = sorted(ALLOWED)
MAX_MODULE_LINES = 400  # a unit a newcomer reads in one sitting


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> list[Path]:
    return sorted(path for package in [*PACKAGES, "scripts"] for path in (REPO / package).rglob("*.py"))


def _module_level_imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    """Imports run when the module is imported: not those inside functions or `if TYPE_CHECKING:`."""
    found: list[ast.ImportFrom | ast.Import] = []
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.Try):
            found += [n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def test_no_package_imports_another_packages_private_names() -> None:
    bad = []
    for path in _sources():
        own = path.relative_to(REPO).parts[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                other = node.module.split(".")[0]
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                hidden = [part for part in node.module.split(".")[1:] if part.startswith("_")]
                if other != own and other in ALLOWED and (private or hidden):
                    bad.append(f"{path.relative_to(REPO)}: from {node.module} import {', '.join(private) or '…'}")
    assert bad == []


def test_there_are_no_import_cycles() -> None:
    modules = {_module_name(path): path for path in _sources()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in _module_level_imports(path):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_module_is_longer_than_a_sitting() -> None:
    long = {
        str(p.relative_to(REPO)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


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
