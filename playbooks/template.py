"""A strict substitution language for playbook parameters: ``{{ alert.source.ip }}`` lookups and nothing else.

No expressions, filters, attribute calls or statements: a template is literal text plus dotted
lookups into the run's context (``alert.*``, ``run.*``, ``playbook.*``). Anything else that looks
like template syntax is a definition error. Every substituted value passes ``check_scalar`` first,
so hostile alert content (``{{ ''.__class__ }}``, ``$(id)``, newlines, huge values) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from playbooks.values import TEMPLATE_MARKERS, HostileValue, check_scalar
from secops.ecs import get

ROOTS = ("alert", "run", "playbook")
LOOKUP_RE = re.compile(r"\{\{\s*((?:alert|run|playbook)(?:\.[A-Za-z0-9_@-]+)+)\s*\}\}")


class TemplateError(ValueError):
    """A playbook template uses syntax this language does not have."""


def lookups(template: str) -> list[str]:
    """The dotted paths a template refers to; raise TemplateError on any other template syntax."""
    rest = LOOKUP_RE.sub("", template)
    for marker in TEMPLATE_MARKERS:
        if marker in rest:
            raise TemplateError(f"only '{{{{ alert.field.path }}}}' lookups are allowed, got {template[:80]!r}")
    return LOOKUP_RE.findall(template)


def check_templates(value: Any) -> None:
    """Validate every string in a parameter structure (definition time)."""
    if isinstance(value, str):
        lookups(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            check_templates(v)
    elif isinstance(value, list):
        for v in value:
            check_templates(v)


def _lookup(context: Mapping[str, Any], path: str, max_length: int) -> Any:
    value = get(context, path)
    if value is None:
        raise HostileValue(f"{path} is missing from the alert")
    items = value if isinstance(value, list) else [value]
    for item in items:
        try:
            check_scalar(item, max_length)
        except HostileValue as exc:
            raise HostileValue(f"{path}: {exc}") from None
    return value


def render(value: Any, context: Mapping[str, Any], max_length: int = 512) -> Any:
    """Substitute lookups in a parameter structure. A string that is exactly one lookup keeps the value's type."""
    if isinstance(value, Mapping):
        return {k: render(v, context, max_length) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context, max_length) for v in value]
    if not isinstance(value, str):
        return value
    paths = lookups(value)
    if not paths:
        return value
    whole = LOOKUP_RE.fullmatch(value.strip())
    if whole:
        return _lookup(context, whole.group(1), max_length)

    def sub(m: re.Match[str]) -> str:
        v = _lookup(context, m.group(1), max_length)
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)

    return LOOKUP_RE.sub(sub, value)
