"""Sessions found without hooks: an index of the agents' transcripts, kept current by watchdog.

``index`` is the index itself (what the commit linker asks), ``read`` the cheap per-file reads,
``watch`` what watchdog does not tell its user, ``ledger`` the SQLite rows that make a restart
re-read only what changed. Where the agents write (the roots) is an agent fact: ``agents.roots``.
"""

from __future__ import annotations

from .index import IndexedSession, SessionIndex

__all__ = ["IndexedSession", "SessionIndex"]
