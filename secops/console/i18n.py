"""Message catalogues (gettext .po, read with Babel) and the choice of a user's language.

Templates and code mark messages with ``_("...")``; ``secops i18n update`` extracts them with Babel (config
``secops/console/babel.cfg``) into ``locale/<lang>/LC_MESSAGES/messages.po``. The machinery is the kernel's
(secops.i18n), shared with the other catalogues (alert reasons, plans, audit summaries, export).
"""

from __future__ import annotations

import gettext

from secops import i18n as catalogues
from secops.i18n import LANGUAGES as AVAILABLE
from secops.i18n import SOURCE_LANGUAGE as DEFAULT

LOCALE_DIR = catalogues.CONSOLE.locale_dir
__all__ = ["AVAILABLE", "DEFAULT", "LOCALE_DIR", "negotiate", "translations"]


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
