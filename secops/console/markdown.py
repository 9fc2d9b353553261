"""Markdown for case comments, rendered safely: raw HTML is escaped (never passed through), only http(s) and
site-relative links are made, images are not loaded, and every link opens without a referrer."""

from __future__ import annotations

from functools import cache
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from secops.console.web import safe_href


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("js-default", {"html": False, "linkify": False, "typographer": False})
    md.disable(["image"])
    md.validateLink = lambda url: safe_href(url) is not None  # type: ignore[method-assign]

    def link_open(self: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


def render_markdown(text: str) -> Markup:
    """HTML for a comment; everything the author typed as HTML arrives as text."""
    # markdown-it escapes the text itself (html=False): its output holds no markup the author wrote
    return Markup(_parser().render(text or ""))  # noqa: S704
