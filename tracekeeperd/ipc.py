"""RECEIVE: the HTTP/JSON API on the Unix socket. Validates, hands over, replies. No git, no network."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import spool
from .errors import TracekeeperError
from .listener import peer_uid
from .protocol import API_PREFIX, MAX_BODY, error_body

if TYPE_CHECKING:
    from .app import Daemon

log = logging.getLogger(__name__)
DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":")))


@web.middleware
async def only_our_user(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse any peer that is not us, whatever the socket's file mode says."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    uid = peer_uid(sock) if sock is not None else None
    if uid is not None and uid != os.geteuid():
        return _json(error_body("forbidden: tracekeeperd serves only its own user"), 403)
    return await handler(request)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error, including aiohttp's own 404/405/413, as one JSON line."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 413:
            message = f"request body larger than {MAX_BODY} bytes"
        return _json(error_body(message), exc.status)
    except TracekeeperError as exc:
        return _json(error_body(str(exc)), 422)
    except Exception as exc:
        log.exception("request %s %s crashed", request.method, request.path)
        return _json(error_body(f"internal error: {type(exc).__name__}: {exc}"), 500)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.read()  # aiohttp enforces client_max_size (413) here
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(reason=f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


def _event(body: dict[str, Any], spool_dir: Path) -> tuple[spool.CommitEvent | None, Path | None]:
    name = body.get("spool")
    if name is not None:
        if not isinstance(name, str) or "/" in name or not name.endswith((spool.SUFFIX, spool.REWRITE_SUFFIX)):
            raise web.HTTPBadRequest(reason="spool must be the name of a file in the spool directory")
        return None, spool_dir / name
    sha, git_dir, work_tree = body.get("sha"), body.get("git_dir"), body.get("work_tree")
    if not isinstance(sha, str) or not spool.valid_sha(sha.lower()):
        raise web.HTTPBadRequest(reason="sha must be a full hexadecimal commit id")
    if not isinstance(git_dir, str) or not os.path.isabs(git_dir):
        raise web.HTTPBadRequest(reason="git_dir must be an absolute path")
    if work_tree is not None and (not isinstance(work_tree, str) or not os.path.isabs(work_tree)):
        raise web.HTTPBadRequest(reason="work_tree must be an absolute path")
    event = spool.CommitEvent(
        sha=sha.lower(),
        git_dir=Path(git_dir),
        work_tree=Path(work_tree) if work_tree else None,
        committed_at=time.time(),
        active=None,
    )
    return event, None


async def post_commit(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    event, spool_file = _event(await _body(request), daemon.config.paths.spool)
    if spool_file is not None:
        result = await daemon.ingest_spool_file(spool_file)
    else:
        assert event is not None
        result = await daemon.ingest(event)
    return _json({"jobs": result.job_ids, "failed": result.failed, "note": result.note}, 202)


async def get_status(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    include_done = request.query.get("all") in ("1", "true", "yes")
    return _json(await daemon.status(include_done=include_done))


#: The longest a flush may keep its request open.
MAX_FLUSH_WAIT = 24 * 3600.0


async def post_flush(request: web.Request) -> web.Response:
    """Answered once the jobs pending now have settled, or after `timeout` seconds."""
    timeout = (await _body(request)).get("timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout <= MAX_FLUSH_WAIT:
        raise web.HTTPBadRequest(reason=f"timeout must be a number of seconds from 0 to {MAX_FLUSH_WAIT:g}")
    return _json(await request.app[DAEMON].flush(float(timeout)))


def _ids(body: dict[str, Any]) -> list[int] | None:
    """`{"jobs": [id, ...]}`, or `{"all": true}` (None): one of them, never neither."""
    ids, everything = body.get("jobs"), body.get("all")
    if everything is True and ids is None:
        return None
    if (
        everything not in (None, False)
        or not isinstance(ids, list)
        or not ids
        or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids)
    ):
        raise web.HTTPBadRequest(reason='name the jobs, {"jobs": [id, ...]}, or all of them, {"all": true}')
    return ids


async def post_retry(request: web.Request) -> web.Response:
    body = await _body(request)
    ids = _ids(body) if body else None
    return _json(await request.app[DAEMON].retry(ids))


async def post_drop(request: web.Request) -> web.Response:
    return _json(await request.app[DAEMON].drop(_ids(await _body(request))))


#: Sessions one forget request may name: a commit links a handful; this only bounds the work.
MAX_FORGET = 1000


async def post_forget(request: web.Request) -> web.Response:
    """`{"sessions": [{"agent", "session_id"}]}` forgets them; `{"undo": "<session id>"}` undoes."""
    daemon = request.app[DAEMON]
    body = await _body(request)
    undo = body.get("undo")
    if undo is not None:
        if not isinstance(undo, str) or not undo:
            raise web.HTTPBadRequest(reason="undo must be a session id")
        pairs = await daemon.unforget(undo)
        return _json({"undone": [{"agent": agent, "session_id": sid} for agent, sid in pairs]})
    sessions = body.get("sessions")
    if not isinstance(sessions, list) or not 0 < len(sessions) <= MAX_FORGET:
        raise web.HTTPBadRequest(reason=f"sessions must be a list of 1 to {MAX_FORGET} sessions")
    wanted: list[tuple[str, str]] = []
    for item in sessions:
        agent = item.get("agent") if isinstance(item, dict) else None
        session_id = item.get("session_id") if isinstance(item, dict) else None
        if not (isinstance(agent, str) and agent and isinstance(session_id, str) and session_id):
            raise web.HTTPBadRequest(reason="every session needs a non-empty agent and session_id")
        wanted.append((agent, session_id))
    return _json({"forgotten": await daemon.forget(wanted)})


def build(daemon: Daemon) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[only_our_user, json_errors])
    app[DAEMON] = daemon
    app.router.add_post(f"{API_PREFIX}/commit", post_commit)
    app.router.add_get(f"{API_PREFIX}/status", get_status)
    app.router.add_post(f"{API_PREFIX}/flush", post_flush)
    app.router.add_post(f"{API_PREFIX}/retry", post_retry)
    app.router.add_post(f"{API_PREFIX}/forget", post_forget)

    app.router.add_post(f"{API_PREFIX}/drop", post_drop)
    return app
