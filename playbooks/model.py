"""Playbook definitions: trigger, ordered steps, conditions, timeouts, retries, approvals, failure policy.

Loaded from YAML and validated completely before anything runs: unknown keys, unknown actions,
parameters an action does not take, literal values of the wrong type and any template syntax beyond
plain lookups are definition errors reported with file and location.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from playbooks.actions import ACTIONS
from playbooks.template import check_templates, lookups
from secops import safe_yaml
from secops.config import Settings, format_validation_error
from secops.ecs import get

BUILTIN_DIR = Path(__file__).parent / "definitions"
SEVERITIES = ["low", "medium", "high", "critical"]
NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class DefinitionError(ValueError):
    """A playbook file that cannot be used; the message names the file and the problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(Strict):
    """A test on the alert (``alert.*``) or an earlier step's result (``steps.<name>.*``)."""

    field: str = Field(pattern=r"^(alert|steps)(\.[A-Za-z0-9_@-]+)+$")
    op: Literal["eq", "ne", "in", "not_in", "exists", "missing", "gte", "lte", "in_cidr", "not_in_cidr"] = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _check(self) -> Condition:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs a list value")
        if self.op in ("in_cidr", "not_in_cidr"):
            nets = self.value if isinstance(self.value, list) else [self.value]
            for n in nets:
                ipaddress.ip_network(str(n), strict=False)
        return self

    def holds(self, context: Mapping[str, Any]) -> bool:
        actual = get(context, self.field)
        op, want = self.op, self.value
        if op == "exists":
            return actual is not None
        if op == "missing":
            return actual is None
        values = actual if isinstance(actual, list) else [actual]
        if op == "eq":
            return want in values
        if op == "ne":
            return want not in values
        if op == "in":
            return any(v in want for v in values)
        if op == "not_in":
            return not any(v in want for v in values)
        if op in ("gte", "lte"):
            try:
                num = float(actual)
            except (TypeError, ValueError):
                return False
            return num >= float(want) if op == "gte" else num <= float(want)
        nets = [ipaddress.ip_network(str(n), strict=False) for n in (want if isinstance(want, list) else [want])]
        inside = any(_in_nets(v, nets) for v in values)
        return inside if op == "in_cidr" else not inside


def _in_nets(value: Any, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return any(addr in n for n in nets)


class Trigger(Strict):
    rule_ids: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    min_severity: Literal["low", "medium", "high", "critical"] = "low"
    conditions: list[Condition] = Field(default_factory=list)

    def matches(self, alert: Mapping[str, Any]) -> bool:
        ctx = {"alert": alert}
        if self.rule_ids and get(alert, "rule.id") not in self.rule_ids:
            return False
        if self.tags and not set(self.tags) & set(get(alert, "tags") or []):
            return False
        severity = get(alert, "rule.severity")
        if severity not in SEVERITIES or SEVERITIES.index(severity) < SEVERITIES.index(self.min_severity):
            return False
        return all(c.holds(ctx) for c in self.conditions)


class Step(Strict):
    name: str = Field(pattern=NAME)
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    when: list[Condition] = Field(default_factory=list, description="All must hold, else the step is skipped")
    approval: bool = False
    approval_timeout_seconds: int | None = Field(None, ge=1)
    timeout_seconds: int = Field(30, ge=1, le=3600)
    retries: int = Field(0, ge=0, le=10)
    backoff_seconds: float = Field(2.0, ge=0, le=600)
    on_failure: Literal["abort", "continue", "revert"] = "abort"

    @field_validator("action")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ACTIONS:
            raise ValueError(f"unknown action {v!r}; known: {', '.join(sorted(ACTIONS))}")
        return v

    @model_validator(mode="after")
    def _params(self) -> Step:
        check_templates(self.params)
        model = ACTIONS[self.action].Params
        fields = model.model_fields
        for key, value in self.params.items():
            if key not in fields:
                raise ValueError(f"action {self.action} takes no parameter {key!r} (takes {', '.join(fields)})")
            if not _has_lookup(value):
                try:
                    _adapter(fields[key]).validate_python(value)
                except ValidationError as exc:
                    raise ValueError(f"parameter {key}: {exc.errors()[0]['msg']}") from None
        missing = [k for k, f in fields.items() if f.is_required() and k not in self.params]
        if missing:
            raise ValueError(f"action {self.action} needs parameter(s) {', '.join(missing)}")
        return self


def _adapter(info: FieldInfo) -> TypeAdapter[Any]:
    """A validator for one model field, keeping its Annotated validators (FieldInfo.annotation drops them)."""
    if info.metadata:
        return TypeAdapter(Annotated[(info.annotation, *info.metadata)])
    return TypeAdapter(info.annotation)


def _has_lookup(value: Any) -> bool:
    if isinstance(value, str):
        return bool(lookups(value))
    if isinstance(value, list):
        return any(_has_lookup(v) for v in value)
    if isinstance(value, Mapping):
        return any(_has_lookup(v) for v in value.values())
    return False


class Playbook(Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
    enabled: bool = True
    dry_run: bool = False
    trigger: Trigger = Field(default_factory=Trigger)
    steps: list[Step] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique(self) -> Playbook:
        names = [s.name for s in self.steps]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate step names: {', '.join(sorted(dupes))}")
        for i, step in enumerate(self.steps):
            for cond in step.when:
                parts = cond.field.split(".")
                if parts[0] == "steps" and (len(parts) < 2 or parts[1] not in names[:i]):
                    raise ValueError(f"step {step.name}: condition refers to {cond.field}, not an earlier step")
        return self


def parse(text: str, source: str = "<string>") -> Playbook:
    try:
        data = safe_yaml.load(text, source)
    except safe_yaml.UnsafeYaml as exc:
        raise DefinitionError(str(exc)) from None
    if not isinstance(data, dict):
        raise DefinitionError(f"{source}: a playbook must be a mapping")
    try:
        return Playbook(**data)
    except ValidationError as exc:
        raise DefinitionError(format_validation_error(exc, source)) from None
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{source}: {exc}") from None


def load_file(path: Path) -> Playbook:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{path}: cannot read ({exc})") from None
    return parse(text, str(path))


def definition_files(settings: Settings) -> list[Path]:
    dirs = ([BUILTIN_DIR] if settings.playbooks.builtin else []) + list(settings.playbooks.dirs)
    return [p for d in dirs for p in sorted(Path(d).glob("*.y*ml")) if p.suffix in (".yaml", ".yml")]


_CACHE: dict[tuple[tuple[str, int, int], ...], tuple[dict[str, Playbook], list[str]]] = {}


def load_all(settings: Settings, strict: bool = True) -> tuple[dict[str, Playbook], list[str]]:
    """All playbooks by name, and the errors (raised instead when strict).

    Parsed definitions are cached per file set and modification time, so workers pick up edited
    files on the next step without re-validating unchanged ones on every step.
    """
    files = definition_files(settings)
    key = tuple((str(p), st.st_mtime_ns, st.st_size) for p in files if (st := _stat(p)))
    if key in _CACHE:
        cached, cached_errors = _CACHE[key]
        if strict and cached_errors:
            raise DefinitionError(cached_errors[0])
        return dict(cached), list(cached_errors)
    books: dict[str, Playbook] = {}
    errors: list[str] = []
    for path in files:
        try:
            book = load_file(path)
            if book.name in books:
                raise DefinitionError(f"{path}: playbook name {book.name!r} defined twice")
            books[book.name] = book
        except DefinitionError as exc:
            if strict:
                raise
            errors.append(str(exc))
    _CACHE.clear()
    _CACHE[key] = (books, errors)
    return dict(books), list(errors)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def matching(books: Iterable[Playbook], alert: Mapping[str, Any]) -> list[Playbook]:
    return [b for b in books if b.enabled and b.trigger.matches(alert)]
