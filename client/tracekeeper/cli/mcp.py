"""`tracekeeper mcp`: the trail as a Model Context Protocol server on stdio, for coding agents.

A thin command over `mcp_server.py` (the tools and their text). Agents start it themselves once
it is registered (`tracekeeper agents install --mcp`); stdout is the protocol's, so nothing here
prints. Registering it with agents is `agents install --mcp` (mcp_setup.py).
"""

from __future__ import annotations

import click

from ..mcp_server import PAGE_CHARS


@click.command("mcp", short_help="Serve the trail to coding agents (MCP over stdio).")
@click.option(
    "--page-chars",
    type=click.IntRange(2_000, 200_000),
    default=PAGE_CHARS,
    show_default=True,
    help="The most characters one answer holds; longer answers come in pages.",
)
@click.option(
    "--root",
    metavar="DIR",
    help="The repository the tools default to (Cursor passes ${workspaceFolder}); ignored unless a directory.",
)
def mcp_command(page_chars: int, root: str | None) -> None:
    """Run a read-only Model Context Protocol server on stdin/stdout, so a coding agent can ask
    why lines were written (why), which sessions touched a file (log), what a commit's session
    said (show) and where something was discussed (search) before it changes code.

    Agents start it themselves; register it with `tracekeeper agents install --mcp`.
    Paths in tool calls are relative to the directory it starts in (use -C to pin one).

    \b
    Examples:
      $ tracekeeper agents install --mcp        # Claude Code, Codex, Gemini CLI, Cursor
      $ tracekeeper -C ~/src/app mcp            # by hand, in one repository
    """
    from pathlib import Path

    from ..mcp_server import serve

    # An agent that does not expand the variable passes it literally: then the start directory.
    start = Path(root).expanduser() if root and Path(root).expanduser().is_dir() else None
    serve(start, page_chars=page_chars)
