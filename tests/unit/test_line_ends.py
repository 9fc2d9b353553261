"""Line-oriented readers split at real line ends only (issue 17 item 19, same class elsewhere): characters that
``str.splitlines`` also treats as line ends (U+2028, U+0085, \\x1c...) are legal inside a JSON string."""

from __future__ import annotations

import json
from pathlib import Path

from detections.kibana import build_objects, load_ndjson


def test_kibana_ndjson_with_raw_line_separators_in_strings(tmp_path: Path) -> None:
    objects = build_objects("secops")[:3]
    objects[0]["attributes"]["description"] = "first\u2028second\u0085third\x1cfourth"
    path = tmp_path / "export.ndjson"
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects), encoding="utf-8")
    assert "\u2028" in path.read_text(encoding="utf-8")  # as Kibana's own export writes it (JSON.stringify)
    assert load_ndjson(path) == objects
