"""`tracekeeper web`: a local, read-only viewer of this repository's trail in a browser.

A thin command over the `web` package (server.py serves, views.py builds the pages). The URL
with its token is the first line of stdout, so a script or a test can read it; Ctrl-C stops the
server and closes its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import click

from ..errors import ClientError


class WebError(ClientError):
    """The viewer cannot start (not a repository, the port is taken)."""


@click.command("web", short_help="A local, read-only viewer of the trail in the browser.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the URL; do not open a browser.")
def web_command(port: int, no_browser: bool) -> None:
    """Serve this repository's timeline, commits, sessions and blame on 127.0.0.1.

    The first line printed is the URL to open; it carries a random token that the browser
    trades for a cookie. Without it every page answers 403. Ctrl-C stops the viewer.

    \b
    Examples:
      $ tracekeeper web
      $ tracekeeper web --port 8765 --no-browser
    """
    from tracekeeperd import git, redact
    from tracekeeperd.config import load
    from tracekeeperd.errors import TracekeeperError
    from tracekeeperd.paths import resolve

    from ..web import server

    repo = Path(".").resolve()
    try:
        git_dir = git.find_git_dir(repo)
        top = git.toplevel(repo) or repo
    except TracekeeperError as exc:
        raise WebError(str(exc)) from None
    config = load()
    site = server.new_site(top, git_dir, config.notes_ref, resolve(), redact.from_settings(config.redaction))
    try:
        sock = server.bind(port)
    except OSError as exc:
        raise WebError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None

    def started(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        click.echo("Serving (read-only) until Ctrl-C.", err=True)
        if not no_browser:
            import threading
            import webbrowser

            def open_browser() -> None:
                with contextlib.suppress(Exception):  # no browser here: the printed URL is enough
                    webbrowser.open(url)

            # On its own thread, as Jupyter does: a console browser (w3m, lynx) is waited for.
            threading.Thread(target=open_browser, name="open-browser", daemon=True).start()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(site, sock, started))
    click.echo("Stopped.", err=True)
