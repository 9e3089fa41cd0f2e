"""Test helpers for the socket integrations: uvicorn in a thread, and an AIECS-style manager.

``StandInWebSocketManager`` has the shape of AIECS's WebSocketManager on the real
``websockets`` library: ``start_server()`` calls
``websockets.serve(self._handle_client_connection, host, port)``; clients send JSON
messages with an ``action`` (``subscribe``, ``confirm``, ``cancel``, ``ping``); the manager
keeps a dict of connections per user, pending confirmations (futures by callback id) and a
heartbeat task; it offers ``broadcast_message``, ``send_to_user``, ``notify_user`` and
``send_heartbeat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import uvicorn
import websockets


@contextlib.contextmanager
def serve_asgi(app: Any, timeout: float = 10.0) -> Iterator[int]:
    """Run ``app`` under uvicorn on 127.0.0.1 (a free port) in a thread; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # uvicorn < 0.29
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        sock.close()


def run(coro: Any, timeout: float = 20.0) -> Any:
    """Run ``coro`` in a fresh event loop, bounded in time."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# --- the stand-in AIECS WebSocketManager ---------------------------------------------------


class UserConfirmation:
    def __init__(self, proceed: bool, feedback: str | None = None) -> None:
        self.proceed = proceed
        self.feedback = feedback

    def __repr__(self) -> str:
        return f"UserConfirmation(proceed={self.proceed!r}, feedback={self.feedback!r})"


class StandInWebSocketManager:
    """An AIECS-style WebSocketManager on the real ``websockets`` library (new asyncio API)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, confirmation_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.server: Any = None
        self.connections: dict[str, set[Any]] = {}  # user_id -> open connections
        self.anonymous: set[Any] = set()  # connected, not yet subscribed
        self.pending_confirmations: dict[str, asyncio.Future] = {}
        self.cancelled_tasks: set[str] = set()
        self.confirmation_timeout = confirmation_timeout
        self._heartbeat_task: asyncio.Task | None = None
        self.log: list[tuple[str, Any]] = []  # what the manager saw, for behaviour checks
        self.on_action: Any = None  # optional ``async (action, data) -> None``: the app's own work

    # --- server lifecycle --------------------------------------------------------------
    async def start_server(self) -> int:
        self.server = await websockets.serve(self._handle_client_connection, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop_server(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(BaseException):
                await self._heartbeat_task
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def clients_gone(self, timeout: float = 5.0) -> None:
        """Wait until every client's handler has seen its close (none left), at most ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.anonymous or self.connections:
            if loop.time() > deadline:
                raise TimeoutError(f"connections still open after {timeout}s: {self.anonymous} {self.connections}")
            await asyncio.sleep(0.01)

    def start_heartbeat(self, interval: float = 30.0) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                await self.send_heartbeat()

        self._heartbeat_task = asyncio.create_task(loop())

    # --- connections ---------------------------------------------------------------------
    async def _handle_client_connection(self, websocket: Any) -> None:
        self.anonymous.add(websocket)
        user_id: str | None = None
        try:
            async for message in websocket:
                self.log.append(("message", message))
                try:
                    data = json.loads(message)
                except json.JSONDecodeError:
                    await websocket.send(json.dumps({"type": "error", "error": "Invalid JSON format"}))
                    continue
                if not isinstance(data, dict):
                    await websocket.send(json.dumps({"type": "error", "error": "Expected an object"}))
                    continue
                action = data.get("action")
                if self.on_action is not None:
                    await self.on_action(action, data)
                if action == "subscribe":
                    user_id = str(data.get("user_id"))
                    self.anonymous.discard(websocket)
                    self.connections.setdefault(user_id, set()).add(websocket)
                    await websocket.send(json.dumps({"type": "subscribed", "user_id": user_id}))
                elif action == "confirm":
                    future = self.pending_confirmations.pop(str(data.get("callback_id")), None)
                    if future is not None and not future.done():
                        future.set_result(UserConfirmation(bool(data.get("proceed", True)), data.get("feedback")))
                    await websocket.send(json.dumps({"type": "confirmed", "found": future is not None}))
                elif action == "cancel":
                    self.cancelled_tasks.add(str(data.get("task_id")))
                    await websocket.send(json.dumps({"type": "cancelled", "task_id": data.get("task_id")}))
                elif action == "ping":
                    await websocket.send(json.dumps({"type": "pong", "echo": data.get("echo")}))
                else:
                    await websocket.send(json.dumps({"type": "error", "error": f"Unknown action: {action}"}))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.anonymous.discard(websocket)
            if user_id is not None:
                conns = self.connections.get(user_id)
                if conns is not None:
                    conns.discard(websocket)
                    if not conns:
                        del self.connections[user_id]

    # --- server -> clients -----------------------------------------------------------------
    def _all(self) -> list[Any]:
        out = list(self.anonymous)
        for conns in self.connections.values():
            out.extend(conns)
        return out

    async def broadcast_message(self, message: dict) -> int:
        text = json.dumps(message)
        sent = 0
        for ws in self._all():
            try:
                await ws.send(text)
                sent += 1
            except websockets.ConnectionClosed:
                pass
        return sent

    async def send_to_user(self, user_id: str, message: dict) -> int:
        text = json.dumps(message)
        sent = 0
        for ws in list(self.connections.get(user_id, ())):
            try:
                await ws.send(text)
                sent += 1
            except websockets.ConnectionClosed:
                pass
        return sent

    async def notify_user(self, step_result: Any, user_id: str, task_id: str, step: int) -> UserConfirmation:
        """Push a step result to the user and wait for their confirmation (AIECS's flow)."""
        callback_id = str(uuid.uuid4())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending_confirmations[callback_id] = future
        await self.send_to_user(
            user_id,
            {
                "type": "task_step_result",
                "callback_id": callback_id,
                "task_id": task_id,
                "step": step,
                "result": step_result,
            },
        )
        try:
            return await asyncio.wait_for(future, self.confirmation_timeout)
        except asyncio.TimeoutError:
            return UserConfirmation(True, "timeout")
        finally:
            self.pending_confirmations.pop(callback_id, None)

    async def send_heartbeat(self, user_id: str | None = None) -> int:
        message = {"type": "heartbeat", "timestamp": time.time()}
        if user_id is not None:
            return await self.send_to_user(user_id, message)
        return await self.broadcast_message(message)
