"""The display's web server (aiohttp): pages, static assets, the WebSocket, the actions.

Routes: ``/`` site overview, ``/room/{id}`` wall display, ``/recovery``
nurses' station (static pages from ``static/``, all drawn by our own
JavaScript); ``/ws`` the live feed (a snapshot, then every change, a health
tick every second; a page sends ``{"watch": ROOM}`` to get that room's
waveforms); ``/api/session``, ``/api/login``, ``/api/logout``;
``/api/command`` (signed in, CSRF token in ``X-CSRF-Token``, same origin);
``/api/recall/{alarm_id}`` the waveform strip around an alarm's onset.

Viewing needs no sign-in (a wall display shows to the room); every action
does, and the signed-in user goes to the daemon as the command's actor.
A browser that cannot keep up (its queue of messages full) is disconnected:
its page then shows the connection banner instead of silently lagging.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from aiohttp import WSMsgType, web

from roommon.core.clock import Clock
from roommon.core.log import get_logger
from roommon.web.auth import Session, Sessions
from roommon.web.site import Message, SiteView
from roommon.web.texts import refusal_text

log = get_logger(__name__)

STATIC = Path(__file__).with_name("static")
COOKIE = "roommon_session"
QUEUE_MAX = 2000
TICK_S = 1.0

#: Page actions -> the command fields a page may set (anything else is dropped).
ACTIONS: dict[str, frozenset[str]] = {
    "acknowledge": frozenset({"alarm_id"}),
    "audio_pause": frozenset(),
    "recovery_confirm": frozenset(),
    "check_done": frozenset({"check_no", "vitals", "note"}),
    "recovery_extend": frozenset({"seconds", "reason"}),
    "recovery_end": frozenset({"reason"}),
}
_PAGES = {"overview": "overview.html", "room": "room.html", "recovery": "recovery.html"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class CommandSender(Protocol):
    async def command(self, room: str, command: Message, *, actor: str) -> Message: ...


class _Client:
    __slots__ = ("queue", "watching", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=QUEUE_MAX)
        self.watching: str | None = None

    def send(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.drop()

    def drop(self) -> None:
        """Too slow: end the connection (its page shows the banner and reconnects)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Hub:
    """The open WebSockets, and the one JSON encoding of each message sent to them."""

    def __init__(self, view: SiteView) -> None:
        self._view = view
        self.clients: set[_Client] = set()
        self.sent = 0
        view.listeners.append(self.broadcast)

    def broadcast(self, message: Message) -> None:
        if not self.clients:
            return
        text = json.dumps(message, separators=(",", ":"))
        for c in list(self.clients):
            c.send(text)
        self.sent += 1

    def _wave(self, client: _Client) -> Any:
        def send(message: Message) -> None:
            client.send(json.dumps(message, separators=(",", ":")))

        return send

    def watch(self, client: _Client, room: str | None, sender: Any) -> None:
        if client.watching is not None:
            self._view.unwatch(client.watching, sender)
        client.watching = room
        if room is not None:
            self._view.watch(room, sender)


class DisplayApp:
    """The aiohttp application and its handlers."""

    def __init__(
        self,
        *,
        view: SiteView,
        commands: CommandSender,
        sessions: Sessions,
        wall: Clock,
        title: str = "roommon",
    ) -> None:
        self.view = view
        self.commands = commands
        self.sessions = sessions
        self.wall = wall
        self.title = title
        self.hub = Hub(view)
        self.commands_sent = 0
        self.app = web.Application(middlewares=[self._headers])
        self.app.add_routes(
            [
                web.get("/", self._page("overview")),
                web.get("/room/{room}", self._page("room")),
                web.get("/recovery", self._page("recovery")),
                web.get("/static/{name}", self._static),
                web.get("/favicon.ico", self._no_icon),
                web.get("/ws", self._ws),
                web.get("/api/session", self._session),
                web.post("/api/login", self._login),
                web.post("/api/logout", self._logout),
                web.post("/api/command", self._command),
                web.get("/api/recall/{alarm_id}", self._recall),
                web.get("/api/recalls/{room}", self._recalls),
            ]
        )

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            for k, v in _HEADERS.items():
                response.headers.setdefault(k, v)
        return response

    # ------------------------------------------------------------------ pages

    def _page(self, name: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            del request
            return web.FileResponse(STATIC / _PAGES[name])

        return handler

    async def _no_icon(self, request: web.Request) -> web.StreamResponse:
        del request
        return web.Response(status=204)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    # ------------------------------------------------------------------ live feed

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=4096)
        await ws.prepare(request)
        client = _Client(ws)
        sender = self.hub._wave(client)
        client.send(json.dumps(self.view.snapshot(), separators=(",", ":")))
        self.hub.clients.add(client)
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._write(client), name="ws-writer")
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        break
                    self._from_page(client, msg.data, sender)
                writer.cancel()
        finally:
            self.hub.clients.discard(client)
            self.hub.watch(client, None, sender)
        return ws

    def _from_page(self, client: _Client, data: str, sender: Any) -> None:
        try:
            raw = json.loads(data)
        except ValueError:
            return
        if isinstance(raw, dict) and "watch" in raw:
            room = raw["watch"]
            self.hub.watch(client, room if isinstance(room, str) else None, sender)

    async def _write(self, client: _Client) -> None:
        while True:
            text = await client.queue.get()
            if text is None:
                await client.ws.close(message=b"too slow")
                return
            await client.ws.send_str(text)

    # ------------------------------------------------------------------ sessions

    def _current(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    async def _session(self, request: web.Request) -> web.Response:
        s = self._current(request)
        return web.json_response(
            {"user": s.user, "csrf": s.csrf} if s else {"user": None, "csrf": None}
        )

    async def _login(self, request: web.Request) -> web.Response:
        self._same_origin(request)
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="sign-in takes application/json")
        try:
            body = await request.json()
            user, password = str(body["user"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"ok": False, "error": "user and password needed"}, status=400)
        loop = asyncio.get_running_loop()
        session = await loop.run_in_executor(None, self.sessions.sign_in, user, password)
        if session is None:
            return web.json_response(
                {"ok": False, "error": "wrong user name or password"}, status=401
            )
        response = web.json_response({"ok": True, "user": session.user, "csrf": session.csrf})
        response.set_cookie(
            COOKIE,
            session.token,
            httponly=True,
            samesite="Strict",
            path="/",
            secure=request.secure,
        )
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        session = self._authorised(request)
        self.sessions.sign_out(session.token)
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    def _same_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden(text="cross-origin request refused")

    def _authorised(self, request: web.Request) -> Session:
        self._same_origin(request)
        session = self._current(request)
        if session is None:
            raise web.HTTPUnauthorized(
                text=json.dumps({"ok": False, "error": "sign in first: no action without a user"}),
                content_type="application/json",
            )
        if not self.sessions.csrf_ok(session, request.headers.get("X-CSRF-Token")):
            raise web.HTTPForbidden(
                text=json.dumps(
                    {"ok": False, "error": "the page's security token is stale: reload the page"}
                ),
                content_type="application/json",
            )
        return session

    # ------------------------------------------------------------------ actions

    async def _command(self, request: web.Request) -> web.Response:
        session = self._authorised(request)
        try:
            body = await request.json()
            room, action = str(body["room"]), str(body["action"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"ok": False, "error": "room and action needed"}, status=400)
        allowed = ACTIONS.get(action)
        if allowed is None:
            return web.json_response({"ok": False, "error": f"unknown action {action}"}, status=400)
        command = {"action": action, **{k: v for k, v in body.items() if k in allowed}}
        log.info("display_command", user=session.user, room=room, action=action)
        self.commands_sent += 1
        reply = await self.commands.command(room, command, actor=session.user)
        ok = bool(reply.get("ok"))
        text = (
            reply.get("detail") or "done"
            if ok
            else refusal_text(str(reply.get("reason")), str(reply.get("detail", "")))
        )
        return web.json_response(
            {"ok": ok, "reason": reply.get("reason"), "text": text, "reply": reply}
        )

    async def _recall(self, request: web.Request) -> web.Response:
        strip = self.view.recalls.get(request.match_info["alarm_id"])
        if strip is None:
            raise web.HTTPNotFound(text="no strip kept for that alarm (older than an hour?)")
        return web.json_response(strip)

    async def _recalls(self, request: web.Request) -> web.Response:
        return web.json_response(self.view.recall_list(request.match_info["room"]))


class DisplayServer:
    """Async context manager: the web app listening, and its health tick, in one TaskGroup."""

    def __init__(self, *, app: DisplayApp, host: str = "127.0.0.1", port: int = 8090) -> None:
        self.app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(
            self.app.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._task = self._tg.create_task(self._tick(), name="display-tick")
        log.info("display_listening", url=self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        assert self._task is not None
        assert self._runner is not None
        self._task.cancel()
        for c in list(self.app.hub.clients):
            c.drop()
        await self._tg.__aexit__(exc_type, exc, tb)
        await self._runner.cleanup()

    async def _tick(self) -> None:
        """Health every second (wall clock), with the site clock's rate for the pages."""
        wall = self.app.wall
        view = self.app.view
        last: tuple[float, float] | None = None
        rate = 1.0
        while True:
            health = view.tick()
            mono = wall.monotonic()
            if last is not None and mono > last[0]:
                rate = max(0.0, (health["now"] - last[1]) / (mono - last[0]))
            last = (mono, health["now"])
            self.app.hub.broadcast({**health, "type": "tick", "rate": rate})
            await wall.sleep(TICK_S)
