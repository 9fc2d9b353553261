"""PCRE -> Lucene regexp translation and Lucene's cost budget (detections.lucene_regex), and keyword bounds."""

from __future__ import annotations

import re
import time

import pytest

from detections.lucene_regex import RegexError, check_budget, lucene_regex, translate
from secops.es.templates import MAX_KEYWORD_CHARS, bound_keywords


@pytest.mark.parametrize(("pcre", "lucene"), [
    (r"\/etc\/passwd", r".*/etc/passwd.*"),          # escaped slash: bare (the backend escapes it once)
    (r"^a\.b$", r"a\.b"),                            # escaped punctuation stays a literal
    (r"a\\b", r".*a\\b.*"),                          # escaped backslash
    (r"\d{2,}x", r".*[0-9]{2,}x.*"),                 # class escapes as explicit classes
    (r"[\/\-a-z]+", r".*[\-/a-z]+.*"),               # escapes inside a class
    (r"\x41\u0042\t", ".*AB\\\t.*"),                 # hex, unicode and control escapes: the literal character
    (r"(?:ab|cd)+?$", r".*(ab|cd)+"),                # non-capturing group, lazy quantifier
    (r"(?P<n>x)", r".*x.*"),                         # named group
    (r'<>@#~"&', r'.*\<\>\@\#\~\"\&.*'),             # Lucene operators are literals in PCRE
    (r"a|^b$", r".*a.*|b"),                          # anchors per top-level alternative
])
def test_translation(pcre: str, lucene: str):
    assert lucene_regex(pcre) == lucene
    re.compile(lucene)  # pySigma validates the value it is given as a Python regex


def test_case_folding_for_ci_fields():
    assert lucene_regex(r"\x41[A-C]x", lowercase=True) == ".*a[a-c]x.*"
    assert lucene_regex(r"[^A]", lowercase=True) == ".*[^a].*"  # (?i)[^A] excludes a and A: values are lowercase


@pytest.mark.parametrize("pcre", [r"\bword", r"(?=x)y", r"(?<!x)y", r"(a)\1", r"a$b", r"x^y", r"\p{L}", r"[[:alpha:]]",
                                  r"a{3,1}", r"(ab", r"ab)", "*a", "\\"])
def test_constructs_lucene_cannot_express_are_refused(pcre: str):
    with pytest.raises(RegexError):
        lucene_regex(pcre)


@pytest.mark.parametrize(("pcre", "reason"), [
    (r"a.{24}$", "too complex to determinize"),               # 2^24 DFA states
    (r"((a|b){1,200}){1,200}", "states before determinization"),  # nested counted repeats
    ("x" * 1001, "index.max_regex_length"),
])
def test_budget_refuses_exploding_automata_quickly(pcre: str, reason: str):
    t0 = time.monotonic()
    with pytest.raises(RegexError, match=reason):
        check_budget(translate(pcre))
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("pcre", [r"a.{8}$", r"(.*a){30}", r"([^.]*\.)*[^.]{40,}(\.[^.]*)*",
                                  r"(?i)(ipfs\.io/|ipfs\.io\s).+\..+@.+\.[a-z]+", r"^/(admin|login)/.+\.php$"])
def test_budget_accepts_ordinary_rules(pcre: str):
    check_budget(translate(pcre.removeprefix("(?i)")))


def test_long_keywords_are_cut_on_utf16_units_and_recorded():
    doc = {"event": {"dataset": "secops.http"}, "message": "m" * 9000, "user_agent": {"original": "😀" * 3000},
           "tags": ["t" * 5000, "short"], "url": {"original": "/"}}
    out = bound_keywords(doc)
    assert out["message"] == doc["message"]  # text field: analysed, never ignored
    assert out["user_agent"]["original"] == "😀" * (MAX_KEYWORD_CHARS // 2)  # pairs never split
    assert out["tags"] == ["t" * MAX_KEYWORD_CHARS, "short"]
    assert [(c["field"], c["length"]) for c in out["secops"]["truncated"]] == [("user_agent.original", 3000),
                                                                               ("tags", 5000)]
    assert doc["tags"][0] == "t" * 5000  # the caller's document is not modified
    short = {"event": {"dataset": "secops.http"}, "url": {"original": "/" * MAX_KEYWORD_CHARS}}
    assert bound_keywords(short) is short
