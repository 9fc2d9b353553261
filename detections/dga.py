"""Algorithmically generated domains: an offline character model, no lookups.

A first-order Markov model of characters (bigram log-probabilities over ``a-z0-9-`` with start and end
marks, add-one smoothed) is trained once from an English word list and shipped as
``detections/data/dga_bigrams.json``. A domain's score is the mean log-probability per transition of its
registrable label (``examplecity`` in ``www.examplecity.org``): pronounceable names score high, random
strings low. The analytic raises an alert when one host looks up many distinct low-scoring domains within
the window (a DGA walking its candidate list), so one odd name never alerts.

Retrain with ``python3 -m detections.dga /usr/share/dict/words`` (Debian's wamerican).
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections import Counter
from functools import cache
from pathlib import Path

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"
START, END = "^", "$"
TABLE = Path(__file__).parent / "data" / "dga_bigrams.json"
MIN_LABEL = 8  # shorter labels carry too little evidence
THRESHOLD = -3.5  # mean log-probability per transition below which a label looks generated


def train(words: list[str]) -> dict[str, dict[str, float]]:
    """Bigram log-probabilities from a word list (letters only, lowercased), add-one smoothed."""
    symbols = START + ALPHABET + END
    counts: Counter[tuple[str, str]] = Counter()
    for word in words:
        w = word.strip().lower()
        if not w.isalpha() or not w.isascii():
            continue
        chars = [START, *w, END]
        counts.update(itertools.pairwise(chars))
    table: dict[str, dict[str, float]] = {}
    for a in START + ALPHABET:
        total = sum(counts[(a, b)] for b in symbols) + len(symbols)
        table[a] = {b: round(math.log((counts[(a, b)] + 1) / total), 3) for b in ALPHABET + END}
    return table


@cache
def model() -> dict[str, dict[str, float]]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def registrable_label(name: str) -> str:
    """The label left of the public suffix, approximated offline: the second-level label, or the third when the
    second is a short generic one (``example.co.uk``, ``city.gov.cn``)."""
    labels = [x for x in name.rstrip(".").lower().split(".") if x]
    if len(labels) < 2:
        return labels[0] if labels else ""
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in {"co", "com", "net", "org", "gov", "edu", "ac"}:
        return labels[-3]
    return labels[-2]


def score(label: str) -> float:
    """Mean log-probability per transition (higher = more like natural language)."""
    table = model()
    chars = [START, *label.lower(), END]
    floor = min(min(row.values()) for row in table.values())
    total = sum(table.get(a, {}).get(b, floor) for a, b in itertools.pairwise(chars))
    return total / (len(chars) - 1)


def looks_generated(name: str) -> bool:
    label = registrable_label(name)
    if len(label) < MIN_LABEL or label.startswith("xn--"):
        return False
    return score(label) < THRESHOLD


def main(argv: list[str]) -> None:
    words = Path(argv[0]).read_text(encoding="utf-8", errors="replace").splitlines()
    TABLE.write_text(json.dumps(train(words), separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {TABLE} from {len(words)} words")


if __name__ == "__main__":
    main(sys.argv[1:])
