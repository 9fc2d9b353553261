"""Failure kinds of playbook actions: the runner retries ActionError, never PermanentError."""


class ActionError(Exception):
    """A failure that may pass on a retry (network, timeout)."""


class PermanentError(ActionError):
    """A failure no retry can fix (protected asset, disallowed URL, rate limit, bad input)."""
