"""room layer."""
