"""`tracekeeperd`: flags, logging, run. Nothing else."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from . import __version__
from .errors import AlreadyRunning, ConfigError, TracekeeperError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tracekeeperd",
        description="Link every commit to the agent session that produced it (runs in the foreground).",
    )
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"tracekeeperd {__version__}")
    args = parser.parse_args(argv)

    from . import config as config_mod

    try:
        config = config_mod.load()
    except ConfigError as exc:
        for line in config_mod.problems_of(exc):
            print(f"tracekeeperd: error: {line}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=(args.log_level or config.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx2", "httpx", "huggingface_hub", "watchdog", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from . import plumbing

    # Before anything opens a descriptor or sizes the pool of kept git processes (plumbing.room).
    plumbing.raise_fd_limit()  # logged once started (app.py)

    from .app import serve

    try:
        asyncio.run(serve(config))
    except AlreadyRunning as exc:
        # Nothing is wrong: the one daemon this user may have is up. Exit 0 so that a service
        # manager does not restart us in a loop: launchd's KeepAlive {SuccessfulExit: false} relaunches
        # any non-zero exit (it has no RestartPreventExitStatus), and the systemd unit lists 0 in
        # RestartPreventExitStatus (a Type=notify exit before READY=1 is a 'protocol' failure).
        print(f"tracekeeperd: not starting: {exc}", file=sys.stderr)
        return 0
    except TracekeeperError as exc:
        print(f"tracekeeperd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
