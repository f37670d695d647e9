"""Transports: layers that only move bytes or messages into and out of roommon.

A transport opens its source (a serial port, the MQTT broker, a recording
file), survives its failures (reporting link state and reconnecting with
:class:`~roommon.transports.backoff.Backoff`), and hands raw bytes or messages
on; it never interprets them. Import the module you need (``serial``,
``mqtt``, ``broker``, ``mcap_files``): this package imports none of them, so
a command that needs no serial port never loads pyserial.
"""
