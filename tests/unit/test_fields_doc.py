"""docs/fields.md is the document contract: generated from the index templates, it must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def generator():
    spec = importlib.util.spec_from_file_location("generate_fields", ROOT / "docs" / "generate_fields.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_field_reference_is_current():
    gen = generator()
    assert (ROOT / "docs" / "fields.md").read_text() == gen.render(), \
        "docs/fields.md is out of date: run python3 docs/generate_fields.py"


def test_every_mapped_field_is_documented_with_its_type():
    gen = generator()
    text = gen.render()
    from secops.es.templates import DATASETS, mappings_for

    for ds in DATASETS.values():
        for field, mapping in gen.leaves(mappings_for(ds)["properties"]):
            assert f"| `{field}` | {gen.type_of(mapping)} |" in text, field


def test_an_undescribed_field_stops_the_generator():
    with pytest.raises(KeyError, match="no description"):
        generator().describe("secops.conn.no_such_field")
