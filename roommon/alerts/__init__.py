"""Alarm layer: conditions reported by checks become alarms with a lifecycle."""
