"""`tracekeeper install` / `uninstall`: thin commands over the library `install.py`.

Errors (InstallError, TracekeeperError, OSError) are raised and said by the CLI's one error table.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..install import (
    GUARD,
    HookChange,
    configure_notes,
    install,
    install_global,
    next_steps,
    submodules,
    unconfigure_notes,
    uninstall,
    uninstall_global,
)
from ..output import info, warn
from .options import REPO_OPTION


def _describe(change: HookChange) -> str:
    if change.action == "absent":
        return f"no tracekeeper hook at {change.hook}"
    extra = ""
    if change.chained is not None and change.action in ("installed", "updated", "unchanged"):
        extra = f" (chaining the previous hook, kept as {change.chained.name})"
    elif change.detail:
        extra = f" ({change.detail})"
    return f"{change.action} {change.hook}{extra}"


@click.command("install", short_help="Install the git hooks in this repository.")
@REPO_OPTION
@click.option("--guard", is_flag=True, help="Also a pre-commit guard against a stale hf-traces-active.json.")
@click.option(
    "--strict/--no-strict",
    default=None,
    help="Guard: block the commit instead of warning (implies --guard; default: keep what is installed).",
)
@click.option("--recurse-submodules", is_flag=True, help="Also in every checked-out submodule, recursively.")
@click.option("--global", "global_", is_flag=True, help="Once for every repository of this user (docs/hooks.md).")
def install_command(repo: Path, guard: bool, strict: bool | None, recurse_submodules: bool, global_: bool) -> None:
    """Install tracekeeper's post-commit hook where this repository's hooks run from.

    Honours core.hooksPath, worktrees and submodules, and works next to Husky, lefthook, the
    pre-commit framework and any hook already there (docs/hooks.md says where it goes). Run it
    again to update or repair the hook; `tracekeeper uninstall` puts back what was there.

    \b
    Examples:
      $ tracekeeper install
      $ tracekeeper install --guard --strict
      $ tracekeeper install --recurse-submodules
      $ tracekeeper install --global
    """
    from tracekeeperd.paths import resolve

    guard = guard or strict is not None
    if global_:
        for change in install_global(resolve(), guard=guard, strict=strict):
            info(_describe(change))
        info("repositories that exist already: run `tracekeeper install` in each")
        return
    from tracekeeperd.config import load

    load()  # a broken config.toml must stop us before any hook changes
    repos = [repo.resolve()]
    if recurse_submodules:
        repos += submodules(repos[0])
    for path in repos:
        for change in install(path, resolve(), guard=guard, strict=strict):
            info(_describe(change))
        for remote, error in configure_notes(path).items():
            warn(f"could not fetch notes from {remote}: {error}")
    for step in next_steps(resolve()):
        info(step)


@click.command("uninstall", short_help="Remove the git hooks from this repository.")
@REPO_OPTION
@click.option("--guard", "guard_only", is_flag=True, help="Remove only the pre-commit guard.")
@click.option("--recurse-submodules", is_flag=True, help="Also in every checked-out submodule, recursively.")
@click.option("--global", "global_", is_flag=True, help="Undo `tracekeeper install --global`.")
def uninstall_command(repo: Path, guard_only: bool, recurse_submodules: bool, global_: bool) -> None:
    """Remove tracekeeper's hooks and put back, byte for byte, what they replaced."""
    from tracekeeperd.paths import resolve

    if global_:
        changes = uninstall_global(resolve())
        for change in changes:
            info(_describe(change))
        if not changes:
            info("no global install recorded; nothing to undo")
        return
    repos = [repo.resolve()]
    if recurse_submodules:
        repos += submodules(repos[0])
    for path in repos:
        for change in uninstall(path, hooks=(GUARD,) if guard_only else None):
            info(_describe(change))
        if not guard_only:
            unconfigure_notes(path)
