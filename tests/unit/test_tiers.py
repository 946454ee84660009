"""The unit tier stays a developer's fast loop: no process started, no server reached.

`tests/unit` runs in well under two minutes because nothing in it starts a broker, a
database server, a browser or a subprocess; `tests/integration`, `tests/e2e` and
`tests/pi` hold everything that does. This keeps a test from drifting into the wrong tier.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

UNIT = Path(__file__).parent
# Whatever starts a process or reaches a server, directly or through the tests' helpers.
FORBIDDEN = {
    "subprocess",
    "socket",
    "psycopg",
    "uvicorn",
    "playwright",
    "paho",
    "multiprocessing",
    "tests.broker",
    "tests.postgres",
    "tests.pipeline_harness",
    "tests.injector",
    "scripts.satellite_rig",
}
# The fixture that runs a test on PostgreSQL as well (tests/conftest.py).
SERVER_FIXTURES = {"database"}


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _fixtures(tree: ast.AST) -> set[str]:
    return {
        arg.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        for arg in node.args.args
    }


@pytest.mark.parametrize("path", sorted(UNIT.glob("test_*.py")), ids=lambda p: p.name)
def test_a_unit_test_starts_no_process_and_reaches_no_server(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    reached = {name for name in _imports(tree) if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)}
    assert not reached, f"{path.name} belongs in tests/integration or tests/e2e: it imports {sorted(reached)}"
    assert not _fixtures(tree) & SERVER_FIXTURES, f"{path.name} runs on PostgreSQL: tests/integration"
