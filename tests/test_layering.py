"""The layering contract: ``lint-imports`` (import-linter) with pyproject.toml's contracts.

CI runs ``lint-imports`` before the tests (``.ci/run``); these tests show a broken contract to
whoever runs pytest, and check that the contracts really catch a wrong import, by running them
on a copy of the package with one injected.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ``python -c`` puts the working directory first on sys.path, so the package found (and
# analysed) is the one in ``cwd``: the checkout, or the copy of a test.
LINT = "import sys; from importlinter.cli import lint_imports_command as lint; sys.exit(lint())"


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter", reason="lint-imports needs the test extra")
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-logo", "--no-cache"],
        cwd=cwd, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def _status(output: str, contract: str) -> str:
    """``KEPT`` or ``BROKEN``: the summary line of ``contract`` in lint-imports' output."""
    for line in output.splitlines():
        if line.startswith(contract + " ") and line.split()[-1] in ("KEPT", "BROKEN"):
            return line.split()[-1]
    raise AssertionError(f"contract {contract!r} not in the output:\n{output}")


def test_import_contracts_hold():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_import_breaks_the_contracts(tmp_path):
    shutil.copytree(REPO / "sarfewshot", tmp_path / "sarfewshot",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    data_contract = "data never imports models"
    assert _status(_lint(tmp_path).stdout, data_contract) == "KEPT"  # the copy, as it is
    with open(tmp_path / "sarfewshot" / "data" / "splits.py", "a") as f:
        f.write("\nfrom sarfewshot.models import hub  # noqa\n")
    with open(tmp_path / "sarfewshot" / "models" / "arch.py", "a") as f:
        f.write("\nimport sarfewshot.cli.main  # noqa\n")
    result = _lint(tmp_path)
    out = result.stdout
    assert result.returncode != 0
    assert _status(out, data_contract) == "BROKEN"
    assert _status(out, "models never imports engine, results or cli") == "BROKEN"
    assert _status(out, "each subpackage imports only from the layers below it") == "BROKEN"
    assert _status(out, "no import cycle among the package's modules") == "BROKEN"
    assert "sarfewshot.data.splits -> sarfewshot.models.hub" in out
    assert "sarfewshot.models.arch -> sarfewshot.cli.main" in out


# The plug-in folders install as sarfewshot.datasets / sarfewshot.trainers but live outside
# sarfewshot/, so an editable install hides them from import-linter's graph: their imports are
# checked here. Dataset plug-ins are the data floor; protocol plug-ins sit with the engine.
PLUGIN_FLOORS = {
    "datasets": ("sarfewshot.models", "sarfewshot.engine", "sarfewshot.pretrain",
                 "sarfewshot.results", "sarfewshot.cli", "sarfewshot.launch"),
    "trainers": ("sarfewshot.pretrain", "sarfewshot.results", "sarfewshot.cli",
                 "sarfewshot.launch"),
}  # fmt: skip


def _imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(PLUGIN_FLOORS))
def test_plugins_import_nothing_above_their_floor(folder):
    forbidden = PLUGIN_FLOORS[folder]
    bad = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((REPO / folder).glob("*.py"))
        for name in _imported(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, bad
