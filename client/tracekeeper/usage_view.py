"""Token counts as every reader shows them (`log`, `show`, `summary`, the viewer): text and JSON.

What a note says is shown, never an estimate: a link without usage (an agent that records
none, a note from before usage existed) is "unknown", in text and as JSON null, and a sum
over links says how many of them were unknown instead of passing the known part off as the
whole. Model names come from transcripts: callers escape them for their medium.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tracekeeperd.agents.usage import ModelUsage, Usage

UNKNOWN = "unknown"


def counts_json(usage: ModelUsage) -> dict[str, int]:
    return usage.to_json()


def usage_json(usage: Usage | None) -> dict[str, Any] | None:
    """`{"models": {model: counts}, "total": counts}`, or None when unknown."""
    if usage is None:
        return None
    return {"models": usage.to_json(), "total": counts_json(usage.total())}


def counts_text(usage: ModelUsage) -> str:
    """`45,900 in (15,552 cached) / 121 out`: input includes the cached part, output any reasoning."""
    cached = f" ({usage.cached:,} cached)" if usage.cached else ""
    return f"{usage.input:,} in{cached} / {usage.output:,} out"


def usage_text(usage: Usage | None) -> str:
    """One line: the total, then each model's share (the only model's name when there is one)."""
    if usage is None:
        return f"tokens {UNKNOWN}"
    models = usage.by_model()
    if not models:
        return "tokens 0"
    total = f"tokens {counts_text(usage.total())}"
    if len(models) == 1:
        return f"{total} · {next(iter(models))}"
    return f"{total} · " + "; ".join(f"{name} {counts_text(counts)}" for name, counts in models.items())


@dataclass(frozen=True)
class Tally:
    """Usage summed over several links: the known part, and how many links were unknown."""

    known: Usage | None
    unknown: int
    links: int

    @classmethod
    def of(cls, usages: Iterable[Usage | None]) -> Tally:
        items = list(usages)
        known = [usage for usage in items if usage is not None]
        total = sum(known[1:], known[0]) if known else None
        return cls(total, len(items) - len(known), len(items))

    def json(self) -> dict[str, Any]:
        """`usage_json` of the known part, plus `unknown_sessions` so a partial sum reads as one."""
        return {"known": usage_json(self.known), "unknown_sessions": self.unknown, "sessions": self.links}

    def text(self) -> str:
        if self.known is None:
            return f"tokens {UNKNOWN}"
        text = usage_text(self.known)
        if self.unknown:
            text += f" (+ {self.unknown} session{'s' if self.unknown != 1 else ''} {UNKNOWN})"
        return text
