"""Message catalogues (gettext .po, read with Babel) and the choice of a user's language.

Templates and code mark messages with ``_("...")``; ``pybabel extract -F secops/console/babel.cfg`` collects
them. Catalogues are compiled in memory when first used, so only the reviewed .po text is in the repository.
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT = "en"
AVAILABLE = ("en", "zh_CN")


@cache
def translations(lang: str) -> gettext.NullTranslations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang == DEFAULT or not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


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
