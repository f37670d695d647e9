"""Receiving without a task per message: paho's own callback hands each message over.

aiomqtt's ``client.messages`` iterator costs a task and an ``asyncio.wait`` per
message, plus a copy of each message, and lets its (unbounded) queue grow when
messages come faster than that (``bench/input_cost.py``: about 3x the CPU of
this). :func:`receive` makes paho's ``on_message`` call the handler directly,
inside the socket read, and puts a :class:`~roommon.transports.read_buffer.ReadBuffer`
under paho's socket, so a burst of messages costs one ``recv`` and one wake of
the loop. It returns only by raising ``aiomqtt.MqttError`` when the connection
ends. The handler must be quick and must not raise (it routes; it does not wait).

It reaches into aiomqtt's and paho's private attributes (``client._client``,
``_queue``, ``_disconnected``, ``paho._sock``): aiomqtt is pinned to 2.5.x in
``pyproject.toml`` for this reason, and ``tests/test_read_buffer.py`` and the
broker tests fail if a release moves them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import aiomqtt

from roommon.transports.read_buffer import ReadBuffer


class InboundMessage(Protocol):
    """What a handler gets: paho's message (``topic`` a str) or, for what arrived before
    the handler was installed, aiomqtt's (``topic`` a ``Topic``: use ``str()``)."""

    @property
    def topic(self) -> object: ...

    @property
    def payload(self) -> object: ...


async def receive(client: aiomqtt.Client, handler: Callable[[InboundMessage], None]) -> None:
    """Hand every inbound message of ``client`` to ``handler`` until the connection ends."""
    paho = client._client
    if paho._sock is not None and not isinstance(paho._sock, ReadBuffer):
        paho._sock = ReadBuffer(paho._sock)
    queue = client._queue
    while not queue.empty():  # arrived before this reader started
        handler(queue.get_nowait())

    def from_paho(_client: object, _userdata: object, message: InboundMessage) -> None:
        handler(message)

    paho.on_message = from_paho
    try:
        await asyncio.shield(client._disconnected)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # whatever paho or aiomqtt failed with: a lost connection
        raise aiomqtt.MqttError("Disconnected during message iteration") from exc
    raise aiomqtt.MqttError("Disconnected")
