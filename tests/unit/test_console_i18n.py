"""The console's message catalogues: every marked message has a zh-CN translation with the same placeholders;
language negotiation; safe link targets."""

from __future__ import annotations

import re

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from secops.console import i18n
from secops.console.web import safe_href

CONSOLE = i18n.LOCALE_DIR.parent
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extracted() -> set[str]:
    out = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(str(CONSOLE), METHODS):
        out.add(message if isinstance(message, str) else message[0])
    return out


def test_every_console_message_has_a_chinese_translation():
    with (i18n.LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale="zh_CN")
    translated = {}
    for m in catalog:
        if not m.id:
            continue
        key = m.id if isinstance(m.id, str) else m.id[0]
        text = m.string if isinstance(m.string, str) else m.string[0]
        assert text and not m.fuzzy, f"untranslated: {key!r}"
        assert set(PLACEHOLDER.findall(key)) == set(PLACEHOLDER.findall(text)), key
        translated[key] = text
    messages = extracted()
    assert len(messages) > 150
    assert not messages - set(translated), f"missing from zh_CN: {sorted(messages - set(translated))}"
    assert not set(translated) - messages, f"stale in zh_CN: {sorted(set(translated) - messages)}"
    assert i18n.translations("zh_CN").gettext("Alerts") == "告警"
    assert i18n.translations("zh_CN").ngettext("%(num)s alert", "%(num)s alerts", 5) == "%(num)s 条告警"


def test_language_negotiation():
    assert i18n.negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh_CN"
    assert i18n.negotiate("en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert i18n.negotiate("fr-FR, zh;q=0.5") == "zh_CN"
    assert i18n.negotiate("de") == "en" and i18n.negotiate(None) == "en" and i18n.negotiate("zh;q=abc,en") == "en"
    assert i18n.negotiate("en", preference="zh_CN") == "zh_CN"
    assert i18n.negotiate("zh-CN", preference="xx") == "zh_CN"


def test_only_http_links_and_site_paths_are_linked():
    assert safe_href("https://kibana.example/app/discover#/?_a=x") == "https://kibana.example/app/discover#/?_a=x"
    assert safe_href("/alerts/a1") == "/alerts/a1"
    for bad in ("javascript:alert(1)", "JavaScript:alert(1)", " javascript:x", "data:text/html,x", "//evil.example/",
                "vbscript:x", "https://", "http://a\nb", None, 42):
        assert safe_href(bad) is None, bad


def test_dates_show_the_zone_and_counts_are_grouped_per_locale():
    from markupsafe import Markup

    moment = "2026-11-29T11:38:13.5Z"
    zh, en = i18n.Texts("zh_CN", "Asia/Shanghai"), i18n.Texts("en", "America/New_York")
    assert zh.when(moment) == Markup('<time datetime="2026-11-29T11:38:13.500000Z" title="Asia/Shanghai">'
                                     "2026年11月29日 19:38:13 GMT+08:00</time>")
    assert "Nov 29, 2026, 6:38:13\u202fAM GMT-05:00</time>" in en.when(moment)
    assert "GMT-04:00" in en.when("2026-07-01T12:00:00Z")  # daylight saving time from the tz database
    assert i18n.Texts("en", "UTC").when(1_700_000_000).endswith(">Nov 14, 2023, 10:13:20\u202fPM GMT+00:00</time>")
    assert zh.when("not a time <b>") == "not a time <b>" and zh.when(None) == "-" and zh.when("") == "-"
    assert zh.num(1234567) == en.num(1234567) == "1,234,567"  # CLDR groups both by thousands
    assert i18n.Texts("de", "UTC").num(1234567) == "1.234.567"  # the locale decides, not a fixed separator
    assert zh.num(True) == "True" and zh.num(None) == "-" and zh.num("12") == "12"


def test_time_zones_are_checked():
    import pytest
    from pydantic import ValidationError

    from secops.config import ConsoleSettings, Settings
    from secops.console.pages import zone_choices
    from secops.console.users import UserError, check_timezone

    assert Settings().console.timezone == "Asia/Shanghai"
    assert check_timezone("Europe/Berlin") == "Europe/Berlin"
    for bad in ("Mars/Olympus", "../../etc/passwd", "x" * 100, ""):
        with pytest.raises(UserError):
            check_timezone(bad)
    with pytest.raises(ValidationError):
        ConsoleSettings(timezone="Asia/Nowhere")
    assert "Asia/Shanghai" in zone_choices() and "UTC" in zone_choices() and "posixrules" not in zone_choices()
