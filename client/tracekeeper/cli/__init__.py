"""`tracekeeper`: the click group. Every command lives in its own thin module of this package,
imported only when it runs (LAZY_COMMANDS), over the library modules of `tracekeeper`, which
never print or exit: they return data or raise, and `runner.run` says errors (errors_table)."""

from __future__ import annotations

from pathlib import Path

import click

from tracekeeperd import __version__

from .. import output
from .runner import STATE, run

#: Every subcommand, imported only when that command runs (or its own --help), so `tracekeeper
#: --help` stays near a bare interpreter start. name -> (module, attribute, short help);
#: tests/test_cli_shell.py checks the short help against the real command's.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "agents": ("tracekeeper.cli.agents", "agents", "Coding-agent hooks: list, install, uninstall."),
    "doctor": ("tracekeeper.cli.doctor", "doctor", "Check the whole setup and say how to fix what is wrong."),
    "drop": ("tracekeeper.cli.jobs", "drop", "Forget failed jobs."),
    "flush": ("tracekeeper.cli.jobs", "flush", "Upload everything pending now and wait."),
    "forget": (
        "tracekeeper.cli.trail",
        "forget_command",
        "Delete a session's trace from the store and tombstone its links.",
    ),
    "install": ("tracekeeper.cli.install", "install_command", "Install the git hooks in this repository."),
    "log": ("tracekeeper.cli.trail", "log_command", "List commits with their agent sessions and trace links."),
    "mcp": ("tracekeeper.cli.mcp", "mcp_command", "Serve the trail to coding agents (MCP over stdio)."),
    "pull": ("tracekeeper.cli.sync", "pull", "Fetch trace notes from a remote and merge them in."),
    "push": ("tracekeeper.cli.sync", "push", "Push trace notes to a remote (merging theirs first)."),
    "redact": ("tracekeeper.cli.redact", "redact", "Show what redaction would remove from a transcript."),
    "relink": (
        "tracekeeper.cli.relink",
        "relink_command",
        "Give rewritten or squash-merged commits their trace links.",
    ),
    "retry": ("tracekeeper.cli.jobs", "retry", "Re-queue failed jobs."),
    "search": ("tracekeeper.cli.search", "search_command", "Search the sessions linked to this repository's commits."),
    "service": ("tracekeeper.cli.service", "service", "Run tracekeeperd as a user service (systemd or launchd)."),
    "show": ("tracekeeper.cli.show", "show", "Show the agent conversation behind a commit."),
    "status": ("tracekeeper.cli.status", "status", "Show the daemon and the upload queue."),
    "summary": (
        "tracekeeper.cli.summary",
        "summary_command",
        "Markdown (or JSON) of the agent sessions behind a range of commits.",
    ),
    "uninstall": ("tracekeeper.cli.install", "uninstall_command", "Remove the git hooks from this repository."),
    "web": ("tracekeeper.cli.web", "web_command", "A local, read-only viewer of the trail in the browser."),
    "why": ("tracekeeper.cli.why", "why_command", "The conversation that wrote some lines of a file."),
}


class LazyGroup(click.Group):
    """click's documented LazyGroup pattern, plus a help listing that imports nothing.

    click's own `format_commands` calls `get_command` for every name to read its short help,
    which would import every module; the table above carries the short help instead.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute, _ = LAZY_COMMANDS[cmd_name]
            # __import__ rather than importlib.import_module: the import statement's path, which
            # -X importtime reports (tests/test_cli_shell.py relies on that to see what loads).
            command = getattr(__import__(module, fromlist=[attribute]), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{attribute} is not a click command")
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                rows.append((name, LAZY_COMMANDS[name][2]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _change_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """git's -C: change directory before anything else, so every path (and -C of a subcommand) is
    relative to it. A missing or unusable directory is one usage error (exit 2) for every command."""
    if value is None or ctx.resilient_parsing:
        return value
    import os

    try:
        os.chdir(value)
    except OSError as exc:
        raise click.BadParameter(f"cannot change to {str(value)!r}: {exc.strerror or exc}", ctx, _param) from None
    return value


def _set_quiet(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    output.set_quiet(value)
    return value


def _set_traceback(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        STATE["traceback"] = True
    return value


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracekeeper")
@click.option(
    "-C",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),  # the same check as each command's -C
    callback=_change_dir,
    is_eager=True,
    expose_value=False,
    metavar="DIR",
    help="Run as if started in DIR (like git -C).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    callback=_set_quiet,
    expose_value=False,
    help="Print only data and errors, no progress or notes.",
)
@click.option(
    "--traceback",
    is_flag=True,
    callback=_set_traceback,
    is_eager=True,
    expose_value=False,
    help="Show the stack of an error (same as TRACEKEEPER_DEBUG=1).",
)
def cli() -> None:
    """Link every commit to the coding-agent session that produced it.

    \b
    Quick start:
      $ tracekeeperd &              # the daemon (or: tracekeeper service install)
      $ tracekeeper install         # in each repository
      $ tracekeeper status          # what is queued, done, failing and why
    """


@cli.command(
    "hook",
    short_help="Record an agent session (called by agent hooks).",
    context_settings={"ignore_unknown_options": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hook_command(args: tuple[str, ...]) -> int:
    """Read an agent's hook payload on stdin and record its session in the repository.

    Agents call this (see `tracekeeper agents install`); it prints nothing (Cursor: the JSON
    it expects) and always exits 0.
    """
    from .. import hookcmd

    return hookcmd.main(list(args))  # runner.run returns it as the exit status


def main(argv: list[str] | None = None) -> int:
    """The one place an exception becomes a message and an exit code (errors_table.TABLE).

    Commands and library code raise; nothing below prints `Error:` on its own. With
    TRACEKEEPER_DEBUG=1 or --traceback the stack is shown as well. errors_table is imported
    only when something went wrong, to keep the start-up path short.
    """
    import sys

    return run(cli, sys.argv[1:] if argv is None else argv, "tracekeeper")
