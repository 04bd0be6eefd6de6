"""The layers contract of `make lint` holds for the tree, and catches an import against it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("inventory_actors", "persistence", "serve_app", "inventory_cli")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path: the contract reads its modules, not the installed ones.
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_the_layers_contract(tree_copy: Path) -> None:
    result = _lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import"),
    [
        # The domain is the bottom layer: it imports nothing of the engine.
        ("inventory_actors/domain/views.py", "import inventory_actors.shard.codec"),
        # Storage knows records, not the shard that writes them.
        ("persistence/records.py", "import inventory_actors.shard.protocol"),
        # The shard engine runs without Ray: it never reaches up into the cluster.
        ("inventory_actors/shard/config.py", "import inventory_actors.cluster.calls"),
        # The engine never knows about HTTP.
        ("inventory_actors/cluster/calls.py", "import serve_app.problems"),
        # Features sit side by side: the feed does not import restock jobs.
        ("inventory_actors/feed/as_of.py", "import inventory_actors.restock.partition"),
    ],
)
def test_an_import_against_the_layers_breaks_the_contract(
    tree_copy: Path, module: str, wrong_import: str
) -> None:
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{wrong_import}  # noqa\n")
    result = _lint_imports(tree_copy)
    assert result.returncode != 0
    assert "0 kept, 1 broken" in result.stdout, result.stdout
