"""Token usage per model for one commit's slice of a transcript, as the agent recorded it.

Usage is read, never estimated: a slice with no usage record answers None ("unknown"), and so
does an agent whose transcripts carry none (Cursor, Copilot). One convention for every agent,
whatever its own:

* ``input``: every prompt token the model read, **including** cache reads and cache writes;
* ``cached``: the part of ``input`` read from the prompt cache (Claude ``cache_read_input_tokens``);
* ``cache_write``: the part of ``input`` written to the cache (Claude ``cache_creation_input_tokens``,
  pi ``cacheWrite``), None where the agent does not report it;
* ``output``: every generated token, **including** reasoning;
* ``reasoning``: the part of ``output`` spent thinking, None where the agent does not report it.

OpenAI (Codex) and Gemini already count cached tokens inside input; Anthropic and pi count them
beside it, so for those ``input`` is their input plus both cache fields.

**Slices.** A commit's slice is lines ``start..end`` of the transcript, but records inside it can
only be judged with what came before: Codex re-sends an unchanged running total, Claude writes
one response over several lines, Gemini appends a message again each time it changes. So callers
pass the transcript from line 1 (``enumerate(lines, start=1)``) and the slice bounds; lines
before ``start`` are read for context only and lines after ``end`` are ignored, so a slice's
answer never changes as the session grows. Every response is charged to exactly one slice: the
one holding the line where it is first recorded (``tests/test_usage.py`` checks that slices add
up to the whole). A slice that holds usage records but no new response (a Codex rate-limit
refresh, the tail of a Claude message) is known to have spent nothing: an empty ``Usage``.

**Resuming.** A reader's context is explicit: a ``UsageState`` (the model in effect, Codex's
last running total, the keys of responses already charged) that the reader updates line by line.
``slice_usage`` given the state left by lines ``1..k`` and the lines after ``k`` answers exactly
what it answers given lines ``1..`` (``tests/test_usage.py`` checks it for every fixture and any
cut), so a caller that keeps the state at the end of one commit's slice reads only the next
commit's new lines (``tracekeeperd/tokens.py``). The keys charged are all a reader needs of the
past, and all of them are needed: Gemini's ``$set.messages`` lists the whole conversation again,
so a message charged 10,000 lines ago must still be known. They are kept as 64-bit digests in a
sorted array (``SeenKeys``): 8 bytes per response in memory and on disk, so a session with 100k
responses carries 800 kB, and two keys colliding (about 1 in 10**9 at that size) would only
leave one response uncharged.

**Where the agent facts live.** Which records hold usage, which keys hold which count and how
a response written more than once is charged are facts about one agent's transcripts, so each
format module owns them, as ``TranscriptFormat.usage`` (a ``UsageReader``, beside ``edits``); a
format without one records no usage. This module holds what every reader shares: the
convention above, ``CountKeys`` (an agent's table of count keys), and the slicing.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .records import Record, as_record, parse_record

if TYPE_CHECKING:
    from .base import TranscriptFormat

#: Model key for usage whose model the transcript does not name.
UNKNOWN_MODEL = "(unknown model)"
#: Model key that the smallest spenders are folded into beyond ``MAX_MODELS``.
OTHER_MODELS = "(other models)"
#: At most this many models per Usage: a garbled transcript must not blow up a note's meta line.
MAX_MODELS = 16
#: Model names longer than this are cut (they come from the transcript: hostile input).
MAX_MODEL_NAME = 100
#: A count above this is garbage, not usage (a trillion tokens in one response).
MAX_COUNT = 10**12

_OPTIONAL = ("cache_write", "reasoning")


def count(value: object) -> int | None:
    """A token count, or None for anything else (bools, floats, negatives, absurd sizes)."""
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        return None
    return value


def _add_optional(a: int | None, b: int | None) -> int | None:
    """Unknown plus known is the known part: within one agent a field is either always or never there."""
    if a is None:
        return b
    return a if b is None else a + b


def _max_optional(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def model_name(value: object) -> str:
    """A model name safe to store and show: printable, stripped, bounded; else ``UNKNOWN_MODEL``."""
    if not isinstance(value, str):
        return UNKNOWN_MODEL
    name = "".join(char for char in value if char.isprintable()).strip()[:MAX_MODEL_NAME].strip()
    return name or UNKNOWN_MODEL


@dataclass(frozen=True)
class ModelUsage:
    """Tokens one model used; see the module docstring for what each field includes."""

    input: int = 0
    output: int = 0
    cached: int = 0
    cache_write: int | None = None
    reasoning: int | None = None

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            input=self.input + other.input,
            output=self.output + other.output,
            cached=self.cached + other.cached,
            cache_write=_add_optional(self.cache_write, other.cache_write),
            reasoning=_add_optional(self.reasoning, other.reasoning),
        )

    def largest(self, other: ModelUsage) -> ModelUsage:
        """Field by field maximum: the final counts of a response written more than once."""
        return ModelUsage(
            input=max(self.input, other.input),
            output=max(self.output, other.output),
            cached=max(self.cached, other.cached),
            cache_write=_max_optional(self.cache_write, other.cache_write),
            reasoning=_max_optional(self.reasoning, other.reasoning),
        )

    def is_zero(self) -> bool:
        return not any(getattr(self, item.name) for item in fields(self))

    def to_json(self) -> dict[str, int]:
        """``{"input", "output", "cached"}`` always, ``cache_write``/``reasoning`` when reported."""
        value = {"input": self.input, "output": self.output, "cached": self.cached}
        for name in _OPTIONAL:
            count = getattr(self, name)
            if count is not None:
                value[name] = count
        return value

    @classmethod
    def from_json(cls, value: object) -> ModelUsage | None:
        """Read ``to_json``'s shape; None unless input and output are counts. A bad optional is dropped."""
        record = as_record(value)
        if record is None:
            return None
        counts = {name: count(record.get(name)) for name in ("input", "output", "cached", *_OPTIONAL)}
        if counts["input"] is None or counts["output"] is None:
            return None
        return cls(
            input=counts["input"],
            output=counts["output"],
            cached=counts["cached"] or 0,
            cache_write=counts["cache_write"],
            reasoning=counts["reasoning"],
        )


@dataclass(frozen=True)
class Usage:
    """Token usage per model; build it with ``Usage.of``. An empty Usage means "known, nothing spent"."""

    models: tuple[tuple[str, ModelUsage], ...] = ()

    @classmethod
    def of(cls, per_model: Mapping[str, ModelUsage]) -> Usage:
        """Normalise: names made safe (merging those that collide), sorted, at most ``MAX_MODELS``.

        Beyond the limit the smallest spenders are summed under ``OTHER_MODELS``, so totals are kept.
        """
        merged: dict[str, ModelUsage] = {}
        for name, usage in per_model.items():
            key = model_name(name)
            merged[key] = merged[key] + usage if key in merged else usage
        if len(merged) > MAX_MODELS:
            other = merged.pop(OTHER_MODELS, ModelUsage())
            ranked = sorted(merged.items(), key=lambda item: (-(item[1].input + item[1].output), item[0]))
            merged = dict(ranked[: MAX_MODELS - 1])
            merged[OTHER_MODELS] = sum((usage for _name, usage in ranked[MAX_MODELS - 1 :]), other)
        return cls(tuple(sorted(merged.items())))

    def by_model(self) -> dict[str, ModelUsage]:
        return dict(self.models)

    def total(self) -> ModelUsage:
        return sum((usage for _name, usage in self.models), ModelUsage())

    def __add__(self, other: Usage) -> Usage:
        merged = self.by_model()
        for name, usage in other.models:
            merged[name] = merged[name] + usage if name in merged else usage
        return Usage.of(merged)

    def to_json(self) -> dict[str, dict[str, int]]:
        """The compact form for a note's meta line: ``{model: {"input": n, "output": n, ...}}``."""
        return {name: usage.to_json() for name, usage in self.models}

    @classmethod
    def from_json(cls, value: object) -> Usage | None:
        """Read ``to_json``'s form from a note; None when absent (old notes) or unreadable.

        Notes travel through remotes, so the value is hostile: damaged entries are skipped, names
        are normalised, and a non-empty object with no readable entry is None, not "zero".
        """
        record = as_record(value)
        if record is None:
            return None
        entries = {name: ModelUsage.from_json(item) for name, item in record.items()}
        good = {name: usage for name, usage in entries.items() if usage is not None}
        if record and not good:
            return None
        return cls.of(good)


def sum_usages(usages: Iterable[Usage | None]) -> Usage | None:
    """The sum of the known usages, or None if none is known. Callers that must tell "partly
    unknown" apart count the Nones themselves."""
    known = [usage for usage in usages if usage is not None]
    return sum(known[1:], known[0]) if known else None


#: A usage record found on a line: (line, model, what it adds). ``None`` as the amount marks a
#: record that adds nothing new (already charged to an earlier line), so the slice still counts as known.
Charge = tuple[int, str, ModelUsage | None]


class SeenKeys:
    """The keys (message or entry ids) of responses already charged, as 64-bit digests.

    A sorted ``array`` of digests plus a small set of recent ones merged into it now and then:
    8 bytes a key, where a ``set[str]`` of uuids costs over 100. Only membership is ever asked,
    so the keys themselves (transcript text) are not kept.
    """

    #: Recent digests kept apart before they are merged into the sorted array.
    MERGE_EVERY = 4096

    def __init__(self, digests: array[int] | None = None) -> None:
        self._sorted: array[int] = digests if digests is not None else array("Q")
        self._recent: set[int] = set()

    @staticmethod
    def _digest(key: str) -> int:
        data = key.encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")

    def _in_sorted(self, digest: int) -> bool:
        at = bisect_left(self._sorted, digest)
        return at < len(self._sorted) and self._sorted[at] == digest

    def __contains__(self, key: str) -> bool:
        digest = self._digest(key)
        return digest in self._recent or self._in_sorted(digest)

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add(self, key: str) -> bool:
        """Remember ``key``; whether it was new."""
        digest = self._digest(key)
        if digest in self._recent or self._in_sorted(digest):
            return False
        self._recent.add(digest)
        if len(self._recent) >= self.MERGE_EVERY:
            self._merge()
        return True

    def _merge(self) -> None:
        if self._recent:
            self._sorted = array("Q", sorted([*self._sorted, *self._recent]))
            self._recent = set()

    def to_text(self) -> str:
        """The digests as base64 of native-order uint64s, sorted (read back on the same machine)."""
        self._merge()
        return base64.b64encode(self._sorted.tobytes()).decode("ascii")

    @classmethod
    def from_text(cls, text: object) -> SeenKeys | None:
        """``to_text``'s form; None when it is not (a damaged record is read again from line 1)."""
        if not isinstance(text, str):
            return None
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except ValueError:
            return None
        digests = array("Q")
        if digests.itemsize != 8 or len(data) % 8:
            return None
        digests.frombytes(data)
        if any(digests[i] >= digests[i + 1] for i in range(len(digests) - 1)):
            return None
        return cls(digests)


@dataclass
class UsageState:
    """What a usage reader carries from one line to the next, so reading can stop and resume.

    One shape for every format; each reader uses the fields its agent needs: Codex ``model`` (the
    latest ``turn_context``) and ``total`` (the last running total, to tell a re-sent one), Claude,
    Gemini and pi ``seen`` (responses already charged). A reader updates it as it reads; lines
    read with it after ``k`` lines are charged as if read from line 1.
    """

    model: str = UNKNOWN_MODEL
    total: tuple[int | None, ...] | None = None
    seen: SeenKeys = field(default_factory=SeenKeys)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "total": self.total, "seen": self.seen.to_text()}

    @classmethod
    def from_json(cls, value: object) -> UsageState | None:
        """``to_json``'s form, or None for anything else (then the caller starts from line 1)."""
        record = as_record(value)
        if record is None or not isinstance(record.get("model"), str):
            return None
        total = record.get("total")
        if total is not None and not (
            isinstance(total, list) and all(item is None or count(item) is not None for item in total)
        ):
            return None
        seen = SeenKeys.from_text(record.get("seen"))
        if seen is None:
            return None
        return cls(str(record["model"]), None if total is None else tuple(total), seen)


#: ``TranscriptFormat.usage``: every usage record in the numbered lines, read with (and updating)
#: the state the earlier lines left; never raises on bad lines.
UsageReader = Callable[[Iterable[tuple[int, bytes]], UsageState], Iterator[Charge]]


@dataclass(frozen=True)
class CountKeys:
    """Where one agent's usage object keeps each count, and what its own input and output leave out.

    The flags turn the agent's convention into this module's: ``cache_beside_input`` when its input
    excludes cache reads and writes (Anthropic, pi), ``reasoning_beside_output`` when its output
    excludes thinking (Gemini), ``extra_input`` for prompt tokens it counts apart (Gemini tool use).
    """

    input: str
    output: str
    cached: str
    cache_write: str | None = None
    reasoning: str | None = None
    extra_input: str | None = None
    cache_beside_input: bool = False
    reasoning_beside_output: bool = False

    def read(self, counts: Record | None) -> ModelUsage | None:
        """The usage in ``counts``, or None unless its input and output are counts."""
        counts = counts or {}
        input_tokens = count(counts.get(self.input))
        output_tokens = count(counts.get(self.output))
        if input_tokens is None or output_tokens is None:
            return None
        cached = count(counts.get(self.cached)) or 0
        write = None if self.cache_write is None else count(counts.get(self.cache_write)) or 0
        reasoning = None if self.reasoning is None else count(counts.get(self.reasoning))
        if self.cache_beside_input:
            input_tokens += cached + (write or 0)
        else:
            cached = min(cached, input_tokens)
        if self.reasoning_beside_output:
            reasoning = reasoning or 0
            output_tokens += reasoning
        if self.extra_input is not None:
            input_tokens += count(counts.get(self.extra_input)) or 0
        return ModelUsage(input_tokens, output_tokens, cached, write, reasoning)


def charge_once(seen: SeenKeys, number: int, key: str | None, model: str | None, usage: ModelUsage) -> Charge:
    """The charge of a record keyed ``key`` that is written again whenever it changes (Gemini, pi):
    its usage the first time the key is seen (always without a key), nothing new after that."""
    fresh = key is None or seen.add(key)
    return number, model_name(model), usage if fresh else None


def usage_records(lines: Iterable[tuple[int, bytes]], *needles: bytes) -> Iterator[tuple[int, Record]]:
    """The JSON objects on lines that contain one of ``needles``, a key every usage record has.

    Most of a transcript is prompts and tool output; skipping lines without the key before
    decoding keeps a per-commit pass over a long session cheap. Agents write keys literally, so a
    record that spells its key with JSON escapes is missed, never misread.
    """
    for number, line in lines:
        if any(needle in line for needle in needles):
            record = parse_record(line)
            if record is not None:
                yield number, record


def slice_usage(
    fmt: TranscriptFormat,
    lines: Iterable[tuple[int, bytes]],
    *,
    start: int = 1,
    end: int | None = None,
    state: UsageState | None = None,
) -> Usage | None:
    """Tokens per model spent in lines ``start..end`` (1-based, inclusive) of a transcript.

    ``lines`` are ``(line number, raw line)`` pairs from the start of the transcript, like
    ``enumerate(read_lines(path), start=1)``: lines before ``start`` are context (already charged
    responses, the model in effect), lines after ``end`` are ignored (and not read past). Or,
    with ``state`` left by reading lines ``1..k``, the lines after ``k``: the answer is the same.
    ``state`` is updated to what the lines read leave. Returns None when the slice holds no usage
    record or the agent records none; never raises on bad lines.
    """
    if fmt.usage is None:
        return None
    bounded = lines if end is None else itertools.takewhile(lambda item: item[0] <= end, lines)
    seen = False
    per_model: dict[str, ModelUsage] = {}
    for number, model, usage in fmt.usage(bounded, UsageState() if state is None else state):
        if number < start:
            continue
        seen = True
        if usage is not None and not usage.is_zero():
            per_model[model] = per_model[model] + usage if model in per_model else usage
    return Usage.of(per_model) if seen else None
