"""secops playbooks context."""
