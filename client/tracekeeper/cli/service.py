"""`tracekeeper service`: thin commands over the library `service.py` (systemd or launchd)."""

from __future__ import annotations

from typing import Any

import click

from ..output import emit_json
from ..service import LABEL, backend, install_service, service_status, shell_only_note, uninstall_service


@click.group(short_help="Run tracekeeperd as a user service (systemd or launchd).")
def service() -> None:
    """Install, remove or inspect tracekeeperd as a user service.

    \b
    Linux: systemd user units tracekeeperd.socket + tracekeeperd.service.
    macOS: the LaunchAgent com.huggingface.tracekeeperd.

    \b
    Examples:
      $ tracekeeper service install
      $ tracekeeper service status --json
      $ tracekeeper service uninstall
    """


@service.command(short_help="Write the service files, enable and start the daemon.")
@click.option("--force", is_flag=True, help="Overwrite service files that were edited by hand.")
def install(force: bool) -> None:
    """Write the unit files (or the LaunchAgent) for this Python and start tracekeeperd.

    Safe to run again: with nothing to change, nothing is reloaded or restarted. Files edited by
    hand are kept unless --force; on systemd customise with drop-ins instead
    (systemctl --user edit tracekeeperd), which install and uninstall never touch.
    """
    lines = install_service(backend(), force=force)
    for line in lines:
        click.echo(line)
    note = shell_only_note()
    if note:
        click.echo(note, err=True)


@service.command(short_help="Stop the daemon and remove the service files.")
def uninstall() -> None:
    """Stop and disable the service, and delete exactly the files install wrote.

    Drop-ins, logs and the queue stay. Run `tracekeeperd` by hand afterwards if you still want it.
    """
    lines = uninstall_service(backend())
    for line in lines:
        click.echo(line)


def _print(data: dict[str, Any]) -> None:
    from rich.markup import escape as markup

    from ..output import console

    out = console()
    manager = data["manager"]
    if not manager.get("available"):
        out.print(f"[yellow]●[/] {data['platform']}: state unknown: {markup(manager['error'])}")
    elif data["platform"] == "systemd":
        units = manager["units"]
        colour = "green" if manager["running"] else "red"
        out.print(f"[{colour}]●[/] systemd user service")
        for unit, info in units.items():
            out.print(f"  {unit:<22} {info['enabled']}, {info['active']}")
    else:
        colour = "green" if manager["running"] else "red"
        if not manager["loaded"]:
            out.print(f"[red]●[/] launchd agent {LABEL} is not loaded")
        else:
            pid = f" (pid {manager['pid']})" if manager.get("pid") else ""
            last = f", last exit {manager['last_exit']}" if manager.get("last_exit") else ""
            out.print(f"[{colour}]●[/] launchd agent {LABEL}: {manager.get('state') or 'loaded'}{pid}{last}")
    advice = {
        "absent": "not installed: tracekeeper service install",
        "current": "ours, current",
        "outdated": "ours, from another version or Python: tracekeeper service install updates it",
        "edited": "edited by hand: install will not overwrite it without --force",
        "foreign": "not written by tracekeeper",
    }
    for entry in data["files"]:
        out.print(f"  file    {markup(entry['path'])}: {advice[entry['state']]}")
    for path in data["drop_ins"]:
        out.print(f"  drop-in {markup(path)}")


@service.command(short_help="Show whether the service is installed, current and running.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: files, drop-ins, manager state.")
def status(as_json: bool) -> None:
    """Show the service manager's view of tracekeeperd and whether its files are ours and current."""
    data = service_status(backend())
    if as_json:
        emit_json(data)
    else:
        _print(data)
