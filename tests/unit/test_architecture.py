"""The layering the README promises, checked on the source: contexts never import each other, the
kernel imports no context (composition roots aside), and production code runs without the dev stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTEXTS = ("collectors", "detections", "inventory", "playbooks")
# The composition roots wire contexts together; everything else in the kernel stays context-free.
COMPOSITION_ROOTS = ("secops/cli.py", "secops/celery_app.py", "secops/console/")
PRODUCT_PACKAGES = ("secops", *CONTEXTS)


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every module a file imports, eagerly or inside a function (relative imports resolved)."""
    package = package or ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "build" not in p.parts)


def offending_imports(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in sources(package):
        rel = path.relative_to(ROOT).as_posix()
        if any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in allowed):
            continue
        for module in sorted(imported_modules(path)):
            top = module.split(".")[0]
            if top in forbidden:
                bad.append(f"{rel} imports {module}")
    return bad


def test_no_context_imports_another_context():
    bad = [line for ctx in CONTEXTS for line in offending_imports(ctx, tuple(c for c in CONTEXTS if c != ctx))]
    assert bad == [], "contexts talk through documents, task names and secops.contracts:\n" + "\n".join(bad)


def test_kernel_imports_no_context_outside_the_composition_roots():
    bad = offending_imports("secops", CONTEXTS, COMPOSITION_ROOTS)
    assert bad == [], "\n".join(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    sample = tmp_path / "probe.py"
    sample.write_text("def f():\n    from inventory import service\n    from . import conn\n")
    found = imported_modules(sample, "collectors")
    assert {"inventory", "inventory.service", "collectors", "collectors.conn"} <= found


BLOCK_DEVSTACK = """
import importlib, importlib.abc, pkgutil, sys

class NoDevstack(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "secops.devstack" or name.startswith("secops.devstack."):
            raise ImportError(f"{name} is development tooling: production code must not import it")
        return None

sys.meta_path.insert(0, NoDevstack())
failed = []
for package in PACKAGES:
    mod = importlib.import_module(package)
    for info in pkgutil.walk_packages(mod.__path__, package + "."):
        if info.name.startswith("secops.devstack") or info.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
print("imported", len(sys.modules))
sys.exit(1 if failed else 0)
"""


def test_production_modules_import_without_the_dev_stack():
    script = f"PACKAGES = {PRODUCT_PACKAGES!r}\n" + BLOCK_DEVSTACK
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_cli_runs_without_the_dev_stack_until_a_stack_command_needs_it():
    script = BLOCK_DEVSTACK.split("failed = []")[0] + (
        "from secops.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['datasets'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['stack', 'status'])\n"
        "assert 'development tooling' in repr(r.exception), r.exception\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
