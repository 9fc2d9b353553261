"""The modules setup.py compiles with mypyc (its COMPILED list, read without running setup()), and a way to run
their sources instead."""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from tests.support import REPO


def compiled_sources() -> list[str]:
    """Source paths relative to the repository, e.g. ``collectors/decode.py``."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no COMPILED list")


def compiled_modules() -> list[str]:
    return [source.removesuffix(".py").replace("/", ".") for source in compiled_sources()]


class FromSource(importlib.abc.MetaPathFinder):
    """Imports the compiled readers from their ``.py`` source instead of the extension beside it."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.origin is None:
            return None
        return importlib.util.spec_from_file_location(name, Path(spec.origin).parent / f"{name.rpartition('.')[2]}.py")


def import_from_source() -> None:
    """From now on, the compiled modules not yet imported load from their sources (atheris instruments bytecode;
    the differential test runs the same code both ways). Compiled and interpreted modules of one build do not mix:
    call this before importing any of them."""
    sys.meta_path.insert(0, FromSource(compiled_modules()))
