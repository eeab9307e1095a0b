"""tracekeeper: the command line for tracekeeperd, and the git hook installer."""

from tracekeeperd import __version__

__all__ = ["__version__"]
