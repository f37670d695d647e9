"""Transports: layers that only move bytes or messages into roommon.

A transport opens its source, survives its failures (reporting link state and
reconnecting), and hands raw bytes to a driver; it never interprets them.
"""

from __future__ import annotations

from roommon.transports.serial import Backoff, LinkState, SampleSink, SerialFeed

__all__ = ["Backoff", "LinkState", "SampleSink", "SerialFeed"]
