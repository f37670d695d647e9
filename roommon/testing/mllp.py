"""A real HL7 receiver for tests: python-hl7's asyncio MLLP server on a loopback port."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from roommon.testing.broker import LOOPBACK, free_port


class MllpPeer:
    """A real HL7 receiver on 127.0.0.1:<free port>, built on python-hl7's asyncio MLLP server.

    It keeps every message it receives (ER7 text, in arrival order) and answers
    each with the ACK ``answer(text)`` names ("AA", "AE", "AR"); ``None``
    answers nothing (the sender's ACK timeout). ``stray_first`` sends an ACK
    naming another control id before each real one. ``status_first`` also sends an
    ACM ``ORA^R41`` dissemination status (PCD-05) before each PCD-04 ACK.
    :meth:`stop` closes the listener and every connection, as a receiver
    going down does; :meth:`start` listens again on the same port. Needs the
    ``hl7`` package (test extra). With ``tls`` it speaks MLLP over TLS.
    """

    def __init__(
        self,
        *,
        answer: Callable[[str], str | None] | None = None,
        status_first: bool = False,
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
        stray_first: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.stray_first = stray_first
        self.answer = answer or (lambda _text: "AA")
        self.status_first = status_first
        self.messages: list[str] = []
        self.acks: list[tuple[str, str]] = []  # (control id, code) answered
        self.received_acks: list[str] = []  # ACKs the sender sent back to our ORA^R41
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        import hl7.mllp

        async def on_client(reader: Any, writer: Any) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._handlers.add(task)
            self._writers.append(writer)
            self.connections += 1
            try:
                await self._serve(reader, writer)
            finally:
                if task is not None:
                    self._handlers.discard(task)

        self._server = await hl7.mllp.start_hl7_server(on_client, LOOPBACK, self.port, ssl=self.tls)

    async def _serve(self, reader: Any, writer: Any) -> None:
        import hl7
        import hl7.mllp

        n_status = 0
        while True:
            try:
                msg = await reader.readmessage()
            except (asyncio.IncompleteReadError, hl7.mllp.InvalidBlockError, OSError):
                return
            text = str(msg)
            if str(msg.segment("MSH")[9][0][0]) == "ACK":
                self.received_acks.append(text)
                continue
            code = self.answer(text)
            control_id = str(msg.segment("MSH")[10])
            async with self._changed:
                self.messages.append(text)
                self._changed.notify_all()
            if code is None:
                continue
            if self.status_first and "ORU^R40" in text:
                n_status += 1
                alarm_id = str(msg.segment("OBR")[3][0][0])
                status = (
                    "MSH|^~\\&|MOCK_AM|HOSP|||20260101000000+0000||ORA^R41^ORA_R41|"
                    f"S{n_status}|P|2.6\rOBR|1||{alarm_id}\rPRT|1|UC||Delivered\r"
                )
                writer.writeblock(status.encode())
            if self.stray_first:  # an ACK for some other message first (a confused engine)
                stray = (
                    "MSH|^~\\&|MOCK|HOSP|||20260101000000+0000||ACK^R01^ACK|X1|P|2.6\r"
                    f"MSA|AA|not-{control_id}\r"
                )
                writer.writeblock(stray.encode())
            writer.writemessage(msg.create_ack(code))
            self.acks.append((control_id, code))
            try:
                await writer.drain()
            except OSError:
                return

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        self._writers.clear()
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def control_ids(self) -> list[str]:
        """MSH-10 of every message received, in arrival order (duplicates included)."""
        return [m.split("\r", 1)[0].split("|")[9] for m in self.messages]

    async def wait_for(
        self, predicate: Callable[[list[str]], bool], *, within: float = 10.0
    ) -> list[str]:
        """Wait until ``predicate(messages)`` holds (``within`` is only a safety net)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self.messages))
        return self.messages
