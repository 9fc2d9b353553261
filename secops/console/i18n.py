"""Message catalogues (gettext .po, read with Babel) and the choice of a user's language.

Templates and code mark messages with ``_("...")``; ``secops i18n update`` extracts them with Babel (config
``secops/console/babel.cfg``) into ``locale/<lang>/LC_MESSAGES/messages.po``. The machinery is the kernel's
(secops.i18n), shared with the other catalogues (alert reasons, plans, audit summaries, export).
"""

from __future__ import annotations

import gettext
from typing import Any

from secops import i18n as catalogues
from secops.audit import summary
from secops.i18n import LANGUAGES as AVAILABLE
from secops.i18n import SOURCE_LANGUAGE as DEFAULT
from secops.i18n import Message, language_tag

LOCALE_DIR = catalogues.CONSOLE.locale_dir
__all__ = ["AVAILABLE", "DEFAULT", "LOCALE_DIR", "Texts", "negotiate", "translations"]
BY_NAME = {c.name: c for c in catalogues.CATALOGUES}


def translations(lang: str) -> gettext.NullTranslations:
    """The console catalogue (the kernel's gettext machinery, domain ``messages``)."""
    return catalogues.translations(catalogues.CONSOLE, lang)


def negotiate(accept_language: str | None, preference: str | None = None) -> str:
    """The user's stored preference, else the best match of the browser's Accept-Language, else English."""
    if preference in AVAILABLE:
        return preference
    choices = []
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        choices.append((-q, i, tag.strip().lower().replace("-", "_")))
    for _q, _i, tag in sorted(choices):
        if tag in ("zh", "zh_cn", "zh_hans", "zh_hans_cn", "zh_sg"):
            return "zh_CN"
        if tag.startswith("en") or tag == "*":
            return "en"
    return DEFAULT


class Texts:
    """What templates call to show stored text in the reader's language: a rule's name or description from the
    alert's ``secops.alert.i18n.<tag>``, a stored message (``{id, params}``) from its catalogue, an audit summary."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def rule(self, alert: dict[str, Any], key: str = "name") -> Any:
        english = (alert.get("rule") or {}).get(key)
        if self.lang == DEFAULT:
            return english
        texts = (((alert.get("secops") or {}).get("alert") or {}).get("i18n") or {}).get(language_tag(self.lang))
        text = texts.get(key) if isinstance(texts, dict) else None
        return text if isinstance(text, str) and text else english

    def message(self, doc: Any, catalogue: str, fallback: Any = None) -> Any:
        text = catalogues.render(doc, BY_NAME[catalogue], self.lang)
        return fallback if text is None else text

    def audit(self, record: dict[str, Any]) -> str:
        msg = Message.from_doc(record.get("summary")) or summary(str(record.get("action") or ""),
                                                                  str(record.get("object") or ""))
        return msg.render(catalogues.translations(catalogues.AUDIT, self.lang))
