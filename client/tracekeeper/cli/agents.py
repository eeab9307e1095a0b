"""`tracekeeper agents`: list, install, uninstall the coding agents' hooks (library: agent_setup.py)."""

from __future__ import annotations

from pathlib import Path

import click

from ..agent_setup import (
    AGENTS,
    AgentState,
    ConfigError,
    add_ours,
    after_install,
    codex_skipped,
    has_backup,
    hook_executable,
    inspect,
    load,
    remove_ours,
    selected,
    write,
)
from ..output import emit_json, info

_AGENT_OPTION = click.option(
    "--agent",
    "agent",
    type=click.Choice([*AGENTS, "all"]),
    multiple=True,
    default=("all",),
    show_default=True,
    help="Which agent (repeat for several); 'all' means every agent found on this machine.",
)


def _describe(state: AgentState) -> str:
    if state.error:
        return f"cannot tell: {state.error}"
    if not state.events:
        return "not installed"
    done = len(state.events)
    total = len(state.spec.events)
    text = "installed" if done == total else f"partly installed ({done}/{total} events: {', '.join(state.events)})"
    if state.trust is not None:
        skipped = codex_skipped(state.trust, state.events)
        if skipped is None:
            text += "; Codex trust: trusted, Codex runs them"
        else:
            text += f"; Codex skips {skipped}: start `codex` and trust the hooks, or /hooks"
    return text


def _describe_mcp(state: AgentState) -> str:
    mcp = state.mcp
    if mcp is None:
        return "not supported for this agent yet"
    if mcp.registered is None:
        return f"cannot tell: {mcp.error}"
    if mcp.registered:
        return f"registered in {mcp.config}"
    if mcp.other_entry:
        return f"not registered: the entry 'tracekeeper' in {mcp.config} does not run `tracekeeper mcp`"
    return f"not registered (tracekeeper agents install --mcp --agent {state.spec.name})"


@click.group(invoke_without_command=True, short_help="Coding-agent hooks: list, install, uninstall.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per agent, in a list.")
@click.pass_context
def agents(ctx: click.Context, as_json: bool) -> None:
    """List the coding agents on this machine and whether tracekeeper's hooks are in place.

    The hooks (`tracekeeper hook <agent>`) record which agent session is active in a
    repository, so each commit links to the sessions that produced it.

    \b
    Examples:
      $ tracekeeper agents
      $ tracekeeper agents install --agent all
      $ tracekeeper agents uninstall --agent codex
    """
    if ctx.invoked_subcommand is not None:
        return
    states = [inspect(spec) for spec in AGENTS.values()]
    if as_json:
        emit_json([state.view() for state in states])
        return
    from ..safetext import visible

    width = max(len(s.spec.name) for s in states)
    for state in states:
        presence = f"present ({state.why})" if state.present else "not found"
        # Paths and config errors are outside text (an env-given dir, a dotfile's target):
        # spelled out, one line each.
        click.echo(visible(f"{state.spec.name:<{width}}  {state.spec.label}: {presence}"))
        click.echo(visible(f"{'':<{width}}  hooks   {_describe(state)}"))
        click.echo(visible(f"{'':<{width}}  config  {state.config}"))
        click.echo(visible(f"{'':<{width}}  mcp     {_describe_mcp(state)}"))
        if state.note:
            click.echo(visible(f"{'':<{width}}  note    {state.note}"))


_MCP_OPTION = click.option(
    "--mcp",
    is_flag=True,
    help="The MCP server (`tracekeeper mcp`) instead of the hooks: Claude Code, Codex, Gemini, Cursor.",
)


@agents.command(name="install", short_help="Add tracekeeper's hooks to agents' user configs.")
@_AGENT_OPTION
@_MCP_OPTION
def install_cmd(agent: tuple[str, ...], mcp: bool) -> int:
    """Merge `tracekeeper hook <agent>` into each agent's user hook config; with --mcp, register
    the `tracekeeper mcp` server in each agent's MCP config instead.

    Other hooks and settings are kept; a file that changes is backed up first as
    <file>.tracekeeper-backup-<time>. Running it again changes nothing.

    \b
    Examples:
      $ tracekeeper agents install               # every agent found here
      $ tracekeeper agents install --agent claude
      $ tracekeeper agents install --mcp         # agents can ask the trail (docs/reading.md)
    """
    if mcp:
        return _mcp(agent, install=True)
    exe = hook_executable()
    failed = False
    skipped: list[str] = []
    did_any = False
    for spec in selected(agent):
        state = inspect(spec)
        if "all" in agent and not state.present:
            skipped.append(spec.name)
            continue
        did_any = True
        path = spec.config_path()
        try:
            loaded = load(path, spec.skeleton, comments=spec.comments)
            new = add_ours(spec, loaded.doc, path, exe)
            changed = not (loaded.exists and new == loaded.doc)
            if not changed:
                info(f"{spec.name}: already installed in {path} (no change)")
            else:
                written = write(loaded, new)
                extra = f" (backup: {written.backup})" if written.backup else ""
                extra += "; comments kept" if written.comments == "kept" else ""
                verb = "updated" if loaded.exists else "created"
                info(f"{spec.name}: {verb} {path}{extra}")
                for line in written.notes(path):
                    info(f"  {line}")
        except (ConfigError, OSError) as exc:
            _say_failed(exc, path)
            failed = True
            continue
        if not state.present:
            info(f"  note: {spec.label} was not found on this machine (no {spec.home()}, not on PATH)")
        for line in after_install(spec, path, changed):
            info(f"  {line}")
    if not did_any:
        info("no coding agent found (looked for: " + ", ".join(AGENTS) + "); use --agent to install anyway")
    elif skipped:
        info(f"not found here, skipped: {', '.join(skipped)} (use --agent NAME to install anyway)")
    if failed:
        return 1  # each failure was said above; runner.run returns the status
    return 0


def _mcp(agent: tuple[str, ...], *, install: bool) -> int:
    """`--mcp`: our entry in each agent's MCP config (mcp_setup.py has every fact), not the hooks;
    for 'all', install registers with the agents found here and uninstall looks at every one."""
    from .. import mcp_setup
    from ..errors_table import report

    every = "all" in agent
    exe = hook_executable()
    failed = False
    skipped: list[str] = []
    for spec in selected(agent):
        if spec.name not in mcp_setup.TARGETS:
            if not every:
                info(f"{spec.name}: registering tracekeeper's MCP server with {spec.label} is not supported yet")
            continue
        if install and every and not inspect(spec).present:
            skipped.append(spec.name)
            continue
        try:
            done = mcp_setup.install(spec.name, exe) if install else mcp_setup.uninstall(spec.name)
        except mcp_setup.ConfigError as exc:
            report(exc)  # one `Error:` line; the other agents are still done, then exit 1
            failed = True
            continue
        info(f"{spec.name}: {done}")
    if skipped:
        info(f"not found here, skipped: {', '.join(skipped)} (use --agent NAME to register anyway)")
    return 1 if failed else 0


def _say_failed(exc: ConfigError | OSError, path: Path) -> None:
    """One agent's failure, said through the one error table (`Error:` line, control characters
    spelled out) without stopping: the other agents are still done, then the exit status is 1."""
    from ..errors_table import report

    report(exc if isinstance(exc, ConfigError) else ConfigError(f"{path}: {exc.strerror or exc}; nothing written"))


@agents.command(name="uninstall", short_help="Remove tracekeeper's hooks from agents' user configs.")
@_AGENT_OPTION
@_MCP_OPTION
def uninstall_cmd(agent: tuple[str, ...], mcp: bool) -> int:
    """Remove exactly the hook entries that run `tracekeeper hook`, leaving the rest as it was;
    with --mcp, exactly the `tracekeeper` MCP server entry instead.

    \b
    Example:
      $ tracekeeper agents uninstall --agent all
      $ tracekeeper agents uninstall --mcp
    """
    if mcp:
        return _mcp(agent, install=False)
    failed = False
    for spec in selected(agent):
        path = spec.config_path()
        try:
            loaded = load(path, spec.skeleton, comments=spec.comments)
            if not loaded.exists:
                if "all" not in agent:
                    info(f"{spec.name}: no {path}, nothing to remove")
                continue
            new = remove_ours(spec, loaded.doc, path)
            if new == loaded.doc:
                info(f"{spec.name}: no tracekeeper hooks in {path}")
                continue
            skeleton = dict(spec.skeleton)
            if new == skeleton and (spec.owns_file or not has_backup(loaded.path)):
                loaded.path.unlink()  # we created the file: leave none behind
                info(f"{spec.name}: removed {path} (it held only tracekeeper's hooks)")
                continue
            written = write(loaded, new)
            kept = "; comments kept" if written.comments == "kept" else ""
            info(f"{spec.name}: removed tracekeeper's hooks from {path} (backup: {written.backup}){kept}")
            for line in written.notes(path):
                info(f"  {line}")
        except (ConfigError, OSError) as exc:
            _say_failed(exc, path)
            failed = True
    if failed:
        return 1  # each failure was said above; runner.run returns the status
    return 0
