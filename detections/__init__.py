"""secops detections context."""
