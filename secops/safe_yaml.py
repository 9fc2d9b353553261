"""The one YAML loader for everything the product reads: rules, playbooks, configuration, info files.

YAML from outside is hostile until proven otherwise. Refused before anything is built from it:
documents above a byte limit, anchors and aliases (the "billion laughs" bomb: a few hundred bytes that
expand to gigabytes; no file the product reads needs them), any tag outside the YAML core schema
(``!!python/object``, ``!custom``), duplicate mapping keys (a reviewer reads the first, a loader keeps
the last), nesting deeper than a limit and more nodes than a limit. Each refusal is one line naming the
source and the line. The checks run while the node graph is composed, so a bomb is refused at its first
anchor, before any expansion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 256 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 24
CORE_TAGS = frozenset({
    "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:str", "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp",
})


class UnsafeYaml(ValueError):
    """YAML that is refused (hostile or malformed); the message is one line with source and line."""

    def __init__(self, reason: str, source: str | None = None):
        super().__init__(f"{source}: {reason}" if source else reason)
        self.reason = reason


def _line(mark: Any) -> str:
    return f" (line {mark.line + 1})" if mark is not None else ""


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, anchors, non-core tags, duplicate keys and oversized graphs."""

    def __init__(self, stream: str, max_nodes: int, max_depth: int):
        super().__init__(stream)
        self._max_nodes, self._max_depth = max_nodes, max_depth
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise UnsafeYaml(f"YAML aliases are not allowed{_line(event.start_mark)}")
        if getattr(event, "anchor", None):
            raise UnsafeYaml(f"YAML anchors/aliases are not allowed (&{event.anchor}){_line(event.start_mark)}")
        self._nodes += 1
        if self._nodes > self._max_nodes:
            raise UnsafeYaml(f"more than {self._max_nodes} YAML nodes{_line(event.start_mark)}")
        self._depth += 1
        if self._depth > self._max_depth:
            raise UnsafeYaml(f"YAML nested deeper than {self._max_depth} levels{_line(event.start_mark)}")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node.tag not in CORE_TAGS:
            raise UnsafeYaml(f"YAML tag {node.tag!r} not allowed{_line(node.start_mark)}")
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key, _value in node.value:
                ident = (key.tag, key.value) if isinstance(key, yaml.ScalarNode) else None
                if ident is not None and ident in seen:
                    raise UnsafeYaml(f"duplicate key {key.value!r} not allowed{_line(key.start_mark)}")
                seen.add(ident)
        return node


def load_all(text: str | bytes, source: str | None = None, *, max_bytes: int = MAX_BYTES,
             max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> list[Any]:
    """Every document of a YAML stream (empty documents skipped), or UnsafeYaml with one line."""
    if isinstance(text, bytes):
        size = len(text)
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UnsafeYaml(f"not UTF-8 ({exc.reason} at byte {exc.start})", source) from None
    else:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise UnsafeYaml(f"file larger than {max_bytes} bytes ({size})", source)
    loader = None
    docs = []
    try:
        loader = _GuardedLoader(text, max_nodes, max_depth)
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                docs.append(loader.construct_document(node))
    except UnsafeYaml as exc:
        raise UnsafeYaml(exc.reason, source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UnsafeYaml(f"not valid YAML: {problem}{_line(mark)}", source) from None
    except RecursionError:
        raise UnsafeYaml("YAML nested too deeply", source) from None
    finally:
        if loader is not None:
            loader.dispose()
    return docs


def load(text: str | bytes, source: str | None = None, **limits: int) -> Any:
    """The single document of a YAML text (None when empty); more than one document is an error."""
    docs = load_all(text, source, **limits)
    if len(docs) > 1:
        raise UnsafeYaml(f"expected one YAML document, found {len(docs)}", source)
    return docs[0] if docs else None


def load_file(path: Path, **limits: int) -> Any:
    """``load`` on a file, refusing it by size before reading it whole."""
    max_bytes = limits.get("max_bytes", MAX_BYTES)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UnsafeYaml(f"file larger than {max_bytes} bytes ({size})", str(path))
        data = path.read_bytes()
    except OSError as exc:
        raise UnsafeYaml(f"cannot read ({exc.strerror or exc})", str(path)) from None
    return load(data, str(path), **limits)
