"""Commands from the broker's clients: parsed, applied to their room, answered once.

:class:`CommandDesk` takes one command payload from a client's command topic,
decides its actor (a display service acts for its signed-in user), applies it to the
room's pipeline (an alarm command or a nurse's recovery command), and hands the reply
on. A redelivered copy (the same id and bytes from the same client) is not applied
again: it gets the first reply again, byte for byte.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection

from roommon.core.clock import Clock
from roommon.core.errors import CommandError
from roommon.core.ids import validate_identifier
from roommon.core.log import get_logger
from roommon.room.pipeline import RoomPipeline
from roommon.wire.commands import CommandReply, parse_command
from roommon.wire.timer import RECOVERY_ACTIONS, parse_nurse_command

log = get_logger(__name__)

#: Command ids remembered to answer a redelivered copy once (a persistent session and
#: clients that re-send until they hear back deliver some commands twice).
COMMANDS_REMEMBERED = 4096


class CommandDesk:
    """Applies commands and answers each once (see module doc).

    ``reply``: sends a reply to its client (the daemon queues it in the outbox).
    ``display_clients``: the clients that act for a signed-in user (``actor``).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        reply: Callable[[CommandReply], None],
        display_clients: Collection[str],
        counters: Counter[str],
    ) -> None:
        self._clock = clock
        self._reply = reply
        self._display_clients = frozenset(display_clients)
        self._counters = counters
        #: (room, client, command id) -> the command's payload and its reply, newest last.
        self._seen: OrderedDict[tuple[str, str, str], tuple[bytes, CommandReply]] = OrderedDict()

    def handle(self, pipeline: RoomPipeline, client: str, payload: bytes) -> CommandReply:
        """Apply one command from ``client`` (the topic's client id), reply and return the reply.

        A display service named in ``daemon.display_clients`` acts for a signed-in
        user: its commands must carry ``actor`` (that user), which becomes the actor
        recorded in the alarm log and recovery history. Any other client naming an
        actor is refused: the topic level is the broker's word, a payload field is not.
        """
        cmd_id: str | None = None
        action: str | None = None
        actor = client
        raw: object = None
        try:
            raw = json.loads(payload)
            if isinstance(raw, dict):
                cmd_id = raw.get("id") if isinstance(raw.get("id"), str) else None
                action = raw.get("action") if isinstance(raw.get("action"), str) else None
        except ValueError:
            pass
        key = None if cmd_id is None else (pipeline.room, client, cmd_id)
        if key is not None and (answered := self._answered(key, payload)) is not None:
            self._reply(answered)  # the same bytes again: the sender did not hear it
            return answered
        received = payload
        try:
            if isinstance(raw, dict):
                actor, payload = self._actor(client, raw, payload)
            if action in RECOVERY_ACTIONS:
                nurse = parse_nurse_command(payload, room=pipeline.room)
                detail = pipeline.recovery_command(nurse, client=actor)
            else:
                cmd = parse_command(payload, room=pipeline.room)
                detail = pipeline.command(cmd, client=actor)
            ok, reason = True, "ok"
        except CommandError as err:
            ok, reason, detail = False, err.reason, err.detail
            log.warning(
                "command_refused",
                room=pipeline.room,
                client=client,
                actor=actor,
                id=cmd_id,
                action=action,
                reason=reason,
                detail=detail,
            )
        self._counters["commands_ok" if ok else "commands_refused"] += 1
        reply = CommandReply(
            id=cmd_id,
            room=pipeline.room,
            client=client,
            action=action,
            ok=ok,
            reason=reason,
            detail=detail,
            t=self._clock.now(),
        )
        if key is not None:
            self._remember(key, received, reply)
        self._reply(reply)
        return reply

    def seen(self, room: str, client: str, cmd_id: str) -> bool:
        """This desk has applied (and answered) the command ``cmd_id`` of ``client``."""
        return (room, client, cmd_id) in self._seen

    def _answered(self, key: tuple[str, str, str], payload: bytes) -> CommandReply | None:
        """The reply already given to this command, if ``payload`` is a copy of it.

        The same id with the same bytes from the same client is the same command
        (a QoS 1 redelivery of the daemon's persistent session, or a client
        re-sending until it hears back): it is applied and decided once. A copy
        gets that same reply again, byte for byte (a client that re-sends has
        not heard it), which a client dedupes on the command id like an alarm
        event on its ``event_id``.
        """
        seen = self._seen.get(key)
        if seen is None or seen[0] != payload:
            return None
        self._counters["commands_duplicate"] += 1
        log.info("command_duplicate", room=key[0], client=key[1], id=key[2])
        return seen[1]

    def _remember(self, key: tuple[str, str, str], payload: bytes, reply: CommandReply) -> None:
        self._seen[key] = (payload, reply)
        self._seen.move_to_end(key)
        while len(self._seen) > COMMANDS_REMEMBERED:
            self._seen.popitem(last=False)

    def _actor(self, client: str, raw: dict[str, object], payload: bytes) -> tuple[str, bytes]:
        """The actor of a command and the payload without its ``actor`` field."""
        trusted = client in self._display_clients
        if "actor" not in raw:
            if trusted:
                raise CommandError("not_allowed", "actor: a display service must name its user")
            return client, payload
        if not trusted:
            raise CommandError(
                "not_allowed",
                f"actor: only a display service client (daemon.display_clients) may name an "
                f"actor; client {client!r} is not one",
            )
        actor = raw.pop("actor")
        try:
            if not isinstance(actor, str):
                raise ValueError("must be a string")
            validate_identifier(actor)
        except ValueError as exc:
            raise CommandError("malformed", f"actor: {exc}") from exc
        return actor, json.dumps(raw).encode()
