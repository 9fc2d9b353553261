"""Translatable messages and the project's gettext catalogues (Babel extracts, .po files hold the text).

Code that writes text a person reads later (alert reasons, playbook plans, audit summaries) stores a
:class:`Message` — the English message id plus its parameters — and whoever shows it renders it in the reader's
language. Each context keeps its own catalogue (``<package>/locale/<lang>/LC_MESSAGES/<domain>.po``) beside a
committed Babel extraction config; ``secops i18n update`` regenerates the catalogues from the source (sorted, so
parallel edits merge) and ``secops i18n check`` lists every message without a translation.
"""

from __future__ import annotations

import gettext
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "zh_CN")
TRANSLATED = tuple(lang for lang in LANGUAGES if lang != SOURCE_LANGUAGE)
ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
PO_WIDTH = 120


def N_(message: str) -> str:
    """Marks a message for extraction without translating it (gettext's convention)."""
    return message


@dataclass(frozen=True)
class Message:
    """A message id (English, with ``%(name)s`` placeholders) and its parameters, rendered per reader."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, tr: gettext.NullTranslations | None = None) -> str:
        """The message in ``tr``'s language; a parameter that is itself a message (an error inside a plan's
        summary) is rendered in the same language first."""
        text = tr.gettext(self.id) if tr is not None else self.id
        params = {k: _nested(v).render(tr) if _nested(v) else v for k, v in self.params.items()}
        try:
            return text % params if params or "%(" in text else text
        except (KeyError, ValueError, TypeError):  # a translation that does not fit its parameters: the English
            return self.id % params if params else self.id

    def english(self) -> str:
        return self.render(None)

    def as_doc(self) -> dict[str, Any]:
        return {"id": self.id, "params": {k: v.as_doc() if isinstance(v, Message) else v
                                          for k, v in self.params.items()}}

    @classmethod
    def from_doc(cls, doc: Any) -> Message | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            return None
        params = doc.get("params")
        return cls(doc["id"], params if isinstance(params, dict) else {})


def _nested(value: Any) -> Message | None:
    """A parameter that is a message: a Message, or a stored one (a mapping with a string ``id``)."""
    return value if isinstance(value, Message) else Message.from_doc(value) if isinstance(value, dict) else None


def message(msgid: str, **params: Any) -> Message:
    return Message(msgid, params)


@dataclass(frozen=True)
class Catalogue:
    """One gettext domain: the source tree it is extracted from, its Babel config, its .po files."""

    name: str
    source: Path
    config: Path
    locale_dir: Path
    domain: str

    def po(self, lang: str) -> Path:
        return self.locale_dir / lang / "LC_MESSAGES" / f"{self.domain}.po"

    def extract(self) -> Catalog:
        """The message template, as Babel extracts it from the source now."""
        with self.config.open("r", encoding="utf-8") as fh:
            method_map, options_map = parse_mapping_cfg(fh)
        template = Catalog(project="secops", charset="utf-8")
        for filename, lineno, msg, comments, context in extract_from_dir(
                str(self.source), method_map, options_map, comment_tags=("TRANSLATORS:",), strip_comment_tags=True):
            template.add(msg, None, [(filename, lineno)], auto_comments=comments, context=context,
                         flags=("python-format",) if PLACEHOLDER.search(msg if isinstance(msg, str) else msg[0])
                         else ())
        return template

    def read(self, lang: str) -> Catalog:
        with self.po(lang).open("rb") as fh:
            return read_po(fh, locale=lang)

    def update(self, lang: str) -> Path:
        """Merge the extracted messages into the language's .po (translations kept, obsolete dropped, sorted)."""
        path = self.po(lang)
        template = self.extract()
        if path.is_file():
            catalog = self.read(lang)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=lang, project="secops", charset="utf-8", fuzzy=False,
                              header_comment=f"# secops {self.name} messages ({lang}). Regenerate with `secops i18n "
                                             f"update`; translate the msgstr lines only.")
        catalog.update(template, no_fuzzy_matching=True, update_creation_date=False)
        catalog.obsolete.clear()
        buf = BytesIO()
        write_po(buf, catalog, width=PO_WIDTH, no_location=True, sort_output=True, ignore_obsolete=True)
        path.write_bytes(buf.getvalue())
        translations.cache_clear()
        return path


@dataclass(frozen=True)
class Gap:
    """One message a catalogue lacks (or translates wrongly)."""

    catalogue: str
    lang: str
    message: str
    problem: str  # missing | untranslated | fuzzy | placeholders | stale

    def __str__(self) -> str:
        return f"{self.catalogue} [{self.lang}] {self.problem}: {self.message!r}"


def _key(msgid: str | tuple[str, ...]) -> str:
    return msgid if isinstance(msgid, str) else msgid[0]


def check(catalogues: Iterable[Catalogue], langs: Iterable[str] = TRANSLATED) -> list[Gap]:
    """Every extracted message must have a reviewed translation with the same placeholders, and no catalogue
    keeps messages the source no longer has."""
    gaps: list[Gap] = []
    langs = tuple(langs)
    for cat in catalogues:
        wanted = {_key(m.id) for m in cat.extract() if m.id}
        for lang in langs:
            if not cat.po(lang).is_file():
                gaps += [Gap(cat.name, lang, m, "missing") for m in sorted(wanted)]
                continue
            have: dict[str, Any] = {}
            for m in cat.read(lang):
                if not m.id:
                    continue
                key = _key(m.id)
                have[key] = m
                strings = m.string if isinstance(m.string, tuple) else (m.string,)
                if not all(strings):
                    gaps.append(Gap(cat.name, lang, key, "untranslated"))
                elif m.fuzzy:
                    gaps.append(Gap(cat.name, lang, key, "fuzzy"))
                elif any(set(PLACEHOLDER.findall(key)) != set(PLACEHOLDER.findall(s)) for s in strings):
                    gaps.append(Gap(cat.name, lang, key, "placeholders"))
            gaps += [Gap(cat.name, lang, m, "missing") for m in sorted(wanted - set(have))]
            gaps += [Gap(cat.name, lang, m, "stale") for m in sorted(set(have) - wanted)]
    return gaps


def _catalogue(name: str, package: str, domain: str, config: str = "locale/babel.cfg") -> Catalogue:
    base = ROOT / package
    return Catalogue(name, base, base / config, base / "locale", domain)


# The project's catalogues. Paths only (no imports), so the kernel stays free of the contexts.
CONSOLE = _catalogue("console", "secops/console", "messages", "babel.cfg")
AUDIT = Catalogue("audit", ROOT / "secops", ROOT / "secops/locale/babel.cfg", ROOT / "secops/locale", "audit")
REASONS = _catalogue("reasons", "detections", "reasons")
KIBANA = _catalogue("kibana", "detections", "kibana", "locale/kibana.cfg")  # Kibana saved-object titles
PLAYBOOKS = _catalogue("playbooks", "playbooks", "playbooks")
EXPORT = _catalogue("export", "inventory", "export")
NOTIFY = Catalogue("notify", ROOT / "secops", ROOT / "secops/locale/notify.cfg", ROOT / "secops/locale", "notify")
CATALOGUES = (CONSOLE, AUDIT, REASONS, KIBANA, PLAYBOOKS, EXPORT, NOTIFY)


@cache
def translations(cat: Catalogue, lang: str) -> gettext.NullTranslations:
    """The catalogue's translations for ``lang`` (English: identity), compiled in memory from the .po."""
    po = cat.po(lang)
    if lang == SOURCE_LANGUAGE or not po.is_file():
        return gettext.NullTranslations()
    buf = BytesIO()
    write_mo(buf, cat.read(lang))
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def render(doc: Any, cat: Catalogue, lang: str) -> str | None:
    """A stored message (``{"id", "params"}``) in ``lang``; None when ``doc`` is not a message."""
    msg = Message.from_doc(doc)
    return msg.render(translations(cat, lang)) if msg else None


def language_tag(lang: str) -> str:
    """gettext's locale name (zh_CN) as the BCP 47 tag documents use (zh-CN)."""
    return lang.replace("_", "-")


def translated_texts(cat: Catalogue, **texts: str | Message) -> dict[str, dict[str, str]]:
    """Each translated language's rendering of ``texts`` ({"zh-CN": {"title": ...}}), for documents that carry
    every language (rule texts of alerts written by code rather than by a rule file)."""
    out: dict[str, dict[str, str]] = {}
    for lang in TRANSLATED:
        tr = translations(cat, lang)
        out[language_tag(lang)] = {k: (v if isinstance(v, Message) else Message(v)).render(tr)
                                   for k, v in texts.items()}
    return out
