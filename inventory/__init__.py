"""secops inventory context."""
