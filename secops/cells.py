"""Inert text for spreadsheets and CSV: the one place that makes attacker-chosen values safe to export.

Values in exports come from the network (DHCP hostnames, HTTP headers, banners) or from files an operator
imports (a CMDB export). A spreadsheet program reads a cell that starts with ``=``, ``+``, ``-``, ``@`` (or a
tab/CR before one) as a formula: ``=HYPERLINK(...)`` exfiltrates, ``=cmd|...`` runs programs (OWASP "CSV
injection"). The order matters:

1. normalise (:func:`clean`): drop control characters (an XLSX writer drops them anyway, so a value like
   ``\\x01=HYPERLINK(...)`` would *become* a formula after a check made on the raw value), drop explicit
   bidirectional overrides (text that displays reversed), replace lone surrogates, then NFKC so full-width
   (U+FF1D, U+FF0B, U+FF0D, U+FF20) become the ASCII characters a spreadsheet acts on;
2. neutralise (:func:`cell`): a value whose first non-blank character starts a formula gets a leading
   apostrophe, so it arrives as text; overlong values are cut to what a spreadsheet cell holds, visibly.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
# C0 controls except tab/LF/CR, DEL, C1 controls, bidi embeddings/overrides/isolates (U+202A-E, U+2066-9).
_DROP = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BLANK = " \t\r\n\u00a0\u200b\u200c\u200d\u2060\ufeff"  # skipped when looking for a formula start
MAX_CELL = 32_767  # characters an Excel cell holds
CUT_MARK = "…[cut: {} characters]"


def strip_controls(text: str) -> str:
    """Text that can be shown anywhere (a terminal, a cell): control and bidi-override characters dropped,
    lone surrogates replaced; everything else exactly as it was."""
    return _SURROGATE.sub("\ufffd", _DROP.sub("", text))


def clean(text: str) -> str:
    """Normalised text: :func:`strip_controls`, then NFKC (full-width and compatibility forms to ASCII)."""
    text = unicodedata.normalize("NFKC", strip_controls(text))
    return _DROP.sub("", text)  # NFKC never yields them today; cheap insurance against a future table


def neutralise(text: str) -> str:
    """An apostrophe before a value a spreadsheet would read as a formula (expects :func:`clean` text)."""
    stripped = text.lstrip(_BLANK)
    if text.startswith(FORMULA_START) or stripped.startswith(FORMULA_START):
        return "'" + text
    return text


def cell(value: Any, max_length: int | None = MAX_CELL) -> str:
    """Any value as one inert spreadsheet/CSV cell: clean, neutralised, cut to ``max_length`` characters."""
    text = neutralise(clean("" if value is None else str(value)))
    if max_length is not None and len(text) > max_length:
        mark = CUT_MARK.format(len(text) - max_length)
        text = text[:max_length - len(mark)] + mark
    return text


def cell_tree(value: Any) -> Any:
    """JSON exports: every string leaf made inert (no length cut), structure, keys and numbers kept."""
    if isinstance(value, str):
        return cell(value, None)
    if isinstance(value, list):
        return [cell_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: cell_tree(v) for k, v in value.items()}
    return value
