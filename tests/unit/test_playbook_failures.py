"""Whether a failed step is retried is decided by the exception's type, never by its class name."""

from __future__ import annotations

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from elastic_transport import ConnectionError as TransportConnectionError

from playbooks.errors import ActionError, PermanentError
from playbooks.runner import transient


@pytest.mark.parametrize("exc", [ActionError("webhook 503"), SoftTimeLimitExceeded(), TimeoutError("slow"),
                                 TimeoutError("slow"), ConnectionRefusedError("down"),
                                 TransportConnectionError("es down")])
def test_retryable_failures(exc):
    assert transient(exc)


def test_look_alike_names_are_not_retried():
    class TimeoutError(Exception):
        pass

    assert not transient(TimeoutError("same name, other type"))
    assert not transient(PermanentError("protected asset"))
    assert not transient(ValueError("bad input"))
