"""The layers of docs/architecture.md hold in the code: import-linter's contracts
(pyproject.toml, [tool.importlinter]) are kept, they break on an upward import, and the import
graph in the document is the one the code has today."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
SOURCE = ("cli", "api", "worker", "core", "migrations", "pyproject.toml")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_layer_contracts_are_kept():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def copy_of_the_source(tmp_path: Path) -> Path:
    for name in SOURCE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


def test_an_upward_import_breaks_a_contract(tmp_path: Path):
    """The ML code importing the store, the store importing a service, the worker importing the
    API: each one alone makes lint-imports fail and name the contract it breaks."""
    upward = {
        "core/metrics.py": ("from core.store import models", "Core's layers"),
        "core/store/bulk.py": ("from core.services import jobs", "Core's layers"),
        "worker/tasks.py": ("import api.app", "Layers"),
    }
    for path, (line, contract) in upward.items():
        tree = copy_of_the_source(tmp_path / path.replace("/", "_"))
        module = tree / path
        module.write_text(module.read_text() + f"\n{line}  # deliberately upward\n")
        run = lint_imports(tree)
        assert run.returncode != 0, f"{path}: {line} was not caught"
        assert "BROKEN" in run.stdout and contract in run.stdout, run.stdout


def load_import_graph_generator():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "docs" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_import_graph_is_current():
    generator = load_import_graph_generator()
    documented = generator.document_graph(generator.DOCUMENT.read_text())
    assert documented == generator.render(), "run: .venv/bin/python docs/import_graph.py --write"
