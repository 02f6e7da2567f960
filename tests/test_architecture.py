"""The import rules of the architecture: what each package may import of ours (README, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "gateway",
    "edge",
    "simulators",
    "casework",
    "ingest",
    "registry",
    "notify",
    "api",
    "gridwatch",
}
MAY_IMPORT = {
    "gateway": set(),
    "edge": {"gateway"},
    "simulators": {"gateway", "edge"},
    "casework": {"gateway"},
    "ingest": {"gateway", "casework"},
    "registry": {"gateway", "casework", "ingest"},
    "notify": {"gateway", "casework", "ingest", "registry"},
    "api": {"gateway", "casework", "ingest", "registry", "notify"},
    "gridwatch": OURS,
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


def test_every_package_imports_only_what_the_architecture_allows() -> None:
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in _imports(path) - allowed - {package}:
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []
