"""secops collectors context."""
