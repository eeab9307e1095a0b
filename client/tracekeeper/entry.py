"""The `tracekeeper` console script: `tracekeeper hook ...` without importing click.

Agents run `tracekeeper hook <agent>` on every prompt, so that path must start as fast as a bare
interpreter allows: importing click, rich and the daemon's modules (what `tracekeeper.cli`
needs) would cost several times the hook's own work. Everything else goes to the click CLI.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Dispatch on the first argument; returns the exit status for the console script."""
    argv = sys.argv[1:]
    if argv[:1] == ["hook"]:
        from .hookcmd import main as hook_main

        return hook_main(argv[1:])
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
