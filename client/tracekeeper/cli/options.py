"""Options several commands share, declared once so they read and check alike."""

from __future__ import annotations

from pathlib import Path

import click

#: A command's own -C (relative to the global one, as in git); a missing directory is exit 2.
REPO_OPTION = click.option(
    "-C", "repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".", help="Repository."
)
