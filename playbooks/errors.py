"""Failure kinds of playbook actions: the runner retries ActionError, never PermanentError.

An action error carries a translatable :class:`~secops.i18n.Message` (English message id + parameters) that the
run document stores beside the raw English text, so the console shows a step's error in the reader's language
while operators keep the exact text (logs, audit details, ``secops playbooks show``).
"""

from __future__ import annotations

from secops.i18n import N_, Message, message


class ActionError(Exception):
    """A failure that may pass on a retry (network, timeout)."""

    def __init__(self, text: str | Message) -> None:
        self.message: Message | None = text if isinstance(text, Message) else None
        super().__init__(text.english() if isinstance(text, Message) else text)


class PermanentError(ActionError):
    """A failure no retry can fix (protected asset, disallowed URL, rate limit, bad input)."""


def error_message(exc: BaseException) -> Message:
    """The translatable form of a step's failure: the action's own message, else the exception's kind and text
    (the text of an unexpected exception has no translation; the frame around it has)."""
    if isinstance(exc, ActionError) and exc.message is not None:
        return exc.message
    return message(N_("unexpected error %(kind)s: %(error)s"), kind=type(exc).__name__, error=str(exc)[:900])
