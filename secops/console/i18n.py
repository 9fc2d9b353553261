"""Message catalogues (gettext .po, read with Babel) and the choice of a user's language.

Templates and code mark messages with ``_("...")``; ``secops i18n update`` extracts them with Babel (config
``secops/console/babel.cfg``) into ``locale/<lang>/LC_MESSAGES/messages.po``. The machinery is the kernel's
(secops.i18n), shared with the other catalogues (alert reasons, plans, audit summaries, export).
"""

from __future__ import annotations

import gettext
from datetime import datetime
from functools import cache
from typing import Any

from babel.dates import format_datetime, get_timezone
from babel.numbers import format_decimal
from markupsafe import Markup

from secops import i18n as catalogues
from secops.audit import summary
from secops.ecs import parse_time
from secops.i18n import LANGUAGES as AVAILABLE
from secops.i18n import SOURCE_LANGUAGE as DEFAULT
from secops.i18n import Message, language_tag

LOCALE_DIR = catalogues.CONSOLE.locale_dir
__all__ = ["AVAILABLE", "DEFAULT", "LOCALE_DIR", "Texts", "format_number", "format_time", "negotiate",
           "translations"]
# The locale's medium date and time, then the zone as its localized GMT offset (GMT+08:00): the zone is shown on
# every date, the same way in every zone (CLDR has no short name for most zones, e.g. Asia/Shanghai).
TIME_FORMAT = "medium"
ZONE_FORMAT = "ZZZZ"
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


@cache
def _zone(name: str) -> Any:
    return get_timezone(name)


def format_time(value: datetime, lang: str, timezone: str) -> str:
    """A moment in the reader's zone and locale, with the zone: ``Nov 29, 2026, 7:38:13 PM GMT+08:00``,
    ``2026年11月29日 19:38:13 GMT+08:00``."""
    zone = _zone(timezone)
    return (f"{format_datetime(value, TIME_FORMAT, tzinfo=zone, locale=lang)} "
            f"{format_datetime(value, ZONE_FORMAT, tzinfo=zone, locale=lang)}")


def format_number(value: int | float, lang: str) -> str:
    """A count grouped the locale's way (CLDR: 1,234,567 in en and in zh_CN)."""
    return format_decimal(value, locale=lang)


class Texts:
    """What templates call to show stored text in the reader's language: a rule's name or description from the
    alert's ``secops.alert.i18n.<tag>``, a stored message (``{id, params}``) from its catalogue, an audit summary;
    and stored times and counts in the reader's zone and locale (``when``, ``num``)."""

    def __init__(self, lang: str, timezone: str = "UTC") -> None:
        self.lang, self.timezone = lang, timezone

    def when(self, value: Any) -> Markup | str:
        """A stored time (ISO 8601, epoch seconds) as ``<time datetime=ISO-UTC>local time, zone</time>``; anything
        else (empty, unparseable) as the plain value or a dash."""
        if isinstance(value, str | datetime | int | float) and not isinstance(value, bool) and value != "":
            try:
                moment = parse_time(value)
            except (ValueError, OverflowError, OSError):
                moment = None
            if moment is not None:
                utc = moment.astimezone(_zone("UTC")).isoformat().replace("+00:00", "Z")
                return Markup('<time datetime="{}" title="{}">{}</time>').format(
                    utc, self.timezone, format_time(moment, self.lang, self.timezone))
        return "-" if value is None or value == "" else str(value)

    def num(self, value: Any) -> str:
        """A count grouped by the reader's locale; anything that is not a number as it is (a dash when empty)."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return format_number(value, self.lang)
        return "-" if value is None or value == "" else str(value)

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
