"""`tracekeeper mcp`: the trail as a Model Context Protocol server on stdio, for coding agents.

A thin command over `mcp_server.py` (the tools and their text). Agents start it themselves once
it is registered (`tracekeeper agents install --mcp`); stdout is the protocol's, so nothing here
prints. Also the output of `agents install/uninstall --mcp` over `mcp_setup.py`.
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
def mcp_command(page_chars: int) -> None:
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
    from ..mcp_server import serve

    serve(page_chars=page_chars)


def install_mcp(agents: tuple[str, ...]) -> None:
    """`agents install --mcp`: register the server with each agent selected (or found, for 'all')."""
    from .. import mcp_setup
    from ..agent_setup import hook_executable
    from ..output import info

    exe = hook_executable()
    failed = False
    for name, outcome in mcp_setup.install(agents, exe):
        if isinstance(outcome, Exception):
            _say_failed(outcome)
            failed = True
        else:
            info(f"{name}: {outcome}")
    if failed:
        click.get_current_context().exit(1)


def uninstall_mcp(agents: tuple[str, ...]) -> None:
    """`agents uninstall --mcp`: remove exactly our server entry from each agent's config."""
    from .. import mcp_setup
    from ..output import info

    failed = False
    for name, outcome in mcp_setup.uninstall(agents):
        if isinstance(outcome, Exception):
            _say_failed(outcome)
            failed = True
        else:
            info(f"{name}: {outcome}")
    if failed:
        click.get_current_context().exit(1)


def _say_failed(exc: Exception) -> None:
    from ..errors_table import report

    report(exc)
