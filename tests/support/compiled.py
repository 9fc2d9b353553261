"""The modules setup.py compiles with mypyc (its COMPILED list, read without running setup())."""

from __future__ import annotations

import ast

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
