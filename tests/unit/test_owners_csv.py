"""The CMDB owners CSV reader (no Elasticsearch needed): rows split by the csv module alone, values normalised."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory.owners import OwnersError, read_rows

# Characters str.splitlines() treats as line ends although a CSV row does not end there.
SPLITTERS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", SPLITTERS, ids=[f"U+{ord(c):04X}" for c in SPLITTERS])
def test_line_separators_inside_fields_do_not_split_rows(tmp_path: Path, char: str) -> None:
    path = tmp_path / "owners.csv"
    path.write_text(f'ip,owner,department\n198.18.0.1,"Li{char}Wei",Water\n198.18.0.2,Zhang{char}San,Ops\n'
                    f'198.18.0.3,"multi\nline",Grid\n', encoding="utf-8")
    rows = read_rows(path)
    assert [line for line, _ in rows] == [2, 3, 5]  # the line where each row ends
    assert [r["ip"] for _, r in rows] == ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
    assert [r["department"] for _, r in rows] == ["Water", "Ops", "Grid"]
    kept = char if char in "\u2028\u2029" else ""  # C0/C1 controls are dropped, line/paragraph separators kept
    assert [r["owner"] for _, r in rows] == [f"Li{kept}Wei", f"Zhang{kept}San", "multi\nline"]


def test_values_are_normalised_on_import(tmp_path: Path) -> None:
    path = tmp_path / "owners.csv"
    path.write_text('\ufeffIP,责任人\n\uff11\uff19\uff18.18.0.1,"\x01=HYPERLINK(""http://198.18.0.9"",""x"")"\n'
                    '198.18.0.2,\uff20team\n', encoding="utf-8")
    rows = dict(read_rows(path))
    assert rows[2] == {"ip": "198.18.0.1", "owner": '=HYPERLINK("http://198.18.0.9","x")'}  # exports neutralise
    assert rows[3] == {"ip": "198.18.0.2", "owner": "@team"}


def test_unreadable_csv_is_one_error_and_nothing_is_imported(tmp_path: Path) -> None:
    path = tmp_path / "owners.csv"
    path.write_text("ip,owner\n198.18.0.1,a\n198.18.0.2,\"" + "x" * 200_000 + "\"\n", encoding="utf-8")
    with pytest.raises(OwnersError, match=r"line 3: not readable as CSV .*field larger than field limit"):
        read_rows(path)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(OwnersError, match="empty file"):
        read_rows(empty)
