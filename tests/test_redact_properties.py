"""Redaction sees what a reader of the decoded strings sees, wherever a secret is printed.

A transcript line is JSON whose strings hold tool output, which may itself be JSON (Codex's
`function_call_output`, a `gh api` answer), and so on.  A reader decodes every level and strips
the terminal's colour codes; a secret that reader can see must be gone from every level, every
level that was JSON must still be JSON, and a line without a secret must come out byte for byte.

Two layers: a sweep puts every kind of secret after every separator a reader would see (line
start, each JSON escape, control and non-ASCII characters, digits, ANSI sequences) at every
nesting level, in keys and in values; Hypothesis then combines nesting, key/value placement,
JSON writer styles (ASCII-only, ``\\/``, letters written as ``\\uXXXX``) and what follows the
secret.  It runs derandomized, so a failure reproduces on every machine.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tracekeeperd.redact import Redactor

from .secretgen import KINDS, MAKERS, SNIPPETS, innocent_texts

REDACTOR = Redactor()

#: Kinds that are only a secret in context (``password=``, ``AccountKey=``, a URL): the test
#: places their snippet; every other kind is placed bare, right after the context.
IN_CONTEXT = frozenset(
    {
        "aws-secret-access-key",
        "azure-account-key",
        "azure-sas-token",
        "url-password",
        "auth-header",
        "cli-password",
        "generic-password",
        "generic-secret",
    }
)

#: What a reader sees right before a secret: every character JSON escapes (the two-character
#: escapes, control characters as \\u00XX), DEL, non-ASCII (escaped as \\uXXXX or a surrogate pair
#: by ASCII-only writers), and terminal escape sequences.
SEPARATORS = (
    '"',
    "\\",
    "/",
    "\b",
    "\f",
    "\n",
    "\r",
    "\t",
    "\r\n",
    "\x00",
    "\x01",
    "\x1f",
    "\x7f",
    " ",
    ":",
    "=",
    "\u00e9",
    "\u2028",
    "\U0001f600",
)
ANSI = (
    "\x1b[32m",
    "\x1b[1m",
    "\x1b[0;1;32m",
    "\x1b[38;5;208m",
    "\x1b[1;38;2;255;0;0m",
    "\x1b[K",
    "\x1b(B\x1b[m",
    "\x1b]8;;https://example.com\x1b\\",
)
LEADS = ("", "token", "$ gh auth token", "out: 12")
DIGITS = ("", "1", "42")
TAILS = ("", "\n", "\x1b[0m", "\x1b[0m\n", " ", "\t", '"', "\r\n", ".")

CONTEXTS: tuple[str, ...] = (
    "",
    "1",
    "  42\t",
    *(lead + sep + digits for lead in LEADS for sep in SEPARATORS + ANSI for digits in DIGITS),
)
"""Every context a secret is placed after; each ends where a reader sees a new word start."""


def glued(context: str) -> bool:
    """``token:`` or ``token=`` right before the text: an assignment, whose value is what follows.

    Fine before a bare token; before a snippet (``api_key = "..."``) or an innocent text it makes
    a different statement (``token:api_key``), which is not what these tests are about.
    """
    return re.search(r"[A-Za-z][:=]\d*\Z", context) is not None


def contexts_for(kind: str) -> tuple[str, ...]:
    return tuple(c for c in CONTEXTS if kind not in IN_CONTEXT or not glued(c))


UNGLUED = tuple(c for c in CONTEXTS if not glued(c))


# -- writing and reading nested JSON -----------------------------------------


@dataclass(frozen=True)
class Style:
    """How one JSON writer spells strings: ASCII-only, ``\\/``, chosen characters as \\uXXXX."""

    ascii: bool = False
    slash: bool = False
    escaped: frozenset[str] = frozenset()

    def string(self, text: str) -> str:
        out = ['"']
        for ch in text:
            if ch in self.escaped:
                out.append(f"\\u{ord(ch):04x}")
            elif ch == "/" and self.slash:
                out.append("\\/")
            else:
                out.append(json.dumps(ch, ensure_ascii=self.ascii)[1:-1])
        out.append('"')
        return "".join(out)

    def dump(self, value: object) -> str:
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, dict):
            return "{" + ",".join(f"{self.string(k)}:{self.dump(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ",".join(self.dump(v) for v in value) + "]"
        return json.dumps(value)


def wrap(text: str, shape: str) -> object:
    """One level of nesting: ``text`` as a value, a key or a list item of a JSON document."""
    if shape == "key":
        return {text: {"exit_code": 0}}
    if shape == "list":
        return ["bash", "-lc", text]
    return {"output": text, "metadata": {"exit_code": 0, "duration_seconds": 0.2}}


def line_for(text: str, shapes: list[str], styles: list[Style]) -> bytes:
    """A transcript line holding ``text`` under ``len(shapes)`` levels of JSON strings.

    ``styles[0]`` writes the line; ``styles[i]`` the document nested i levels deep.
    """
    for shape, style in zip(reversed(shapes[1:]), reversed(styles[1:]), strict=True):
        text = style.dump(wrap(text, shape))
    top = shapes[0]
    if top == "key":
        record: object = {"type": "event_msg", "payload": {text: 1}}
    elif top == "list":
        record = {"type": "user", "message": {"content": [{"type": "tool_result", "content": [text]}]}}
    else:
        payload = {"type": "function_call_output", "call_id": "call_Zq8Lw0Xv5Nc7Tb1Yh4Pk9M2a", "output": text}
        record = {"timestamp": "2026-11-25T09:00:01.000Z", "type": "response_item", "payload": payload}
    return styles[0].dump(record).encode() + b"\n"


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z])")


def decoded(value: object) -> Iterator[str]:
    """Every string a reader sees, at every level: keys, values, JSON inside strings; colours stripped."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from decoded(key)
            yield from decoded(item)
    elif isinstance(value, list):
        for item in value:
            yield from decoded(item)
    elif isinstance(value, str):
        yield value
        yield _ANSI.sub("", value)
        inner = _document(value)
        if inner is not None:
            yield from decoded(inner)


def skeleton(value: object) -> object:
    """The shape of the nested documents: which strings are JSON, recursively."""
    if isinstance(value, dict):
        return [("k", skeleton(k), skeleton(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [skeleton(v) for v in value]
    if isinstance(value, str):
        inner = _document(value)
        return "s" if inner is None else ("doc", skeleton(inner))
    return value


def _document(text: str) -> object | None:
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        value: object = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None


# -- what each placement must satisfy ------------------------------------------


def placed(kind: str, seed: int) -> tuple[str, str]:
    """(text to place, secret): the bare secret, or for context kinds one of its snippets."""
    rng = random.Random(seed)
    secret = MAKERS[kind](rng)
    if kind not in IN_CONTEXT:
        return secret, secret
    snippet = rng.choice(SNIPPETS[kind])
    return snippet.format(s=secret), secret


def needles(secret: str) -> list[str]:
    """16-character windows of the secret (and of a key's body lines): a partial leak fails too."""
    parts = [secret] + [p for p in secret.splitlines() if len(p) >= 16]
    return sorted({p[i : i + 16] for p in parts for i in range(max(1, len(p) - 15))})


def check_removed(line: bytes, kind: str, secret: str) -> None:
    out, report = REDACTOR.redact_bytes(line)
    record = json.loads(out)  # the line stays valid JSON
    seen = "\0".join([out.decode("utf-8", "surrogatepass"), *decoded(record)])
    leaked = [n for n in needles(secret) if n in seen]
    assert not leaked, (kind, line, out)
    assert kind in report.counts, (kind, line, report.counts)
    assert skeleton(record) == skeleton(json.loads(line))  # every nested level is still JSON
    again, report_again = REDACTOR.redact_bytes(out)
    assert (again, report_again.counts) == (out, {})  # idempotent


def check_untouched(line: bytes) -> None:
    out, report = REDACTOR.redact_bytes(line)
    assert report.counts == {}, (line, report.counts)
    assert out == line


# -- the sweep: every kind after every separator, at every level ------------------

SHAPES = ("value", "key", "list")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_after_every_separator_at_every_level(kind: str) -> None:
    for n, context in enumerate(contexts_for(kind)):
        text, secret = placed(kind, n)
        levels = 1 + n % 3
        shapes = [SHAPES[(n + i) % 3] for i in range(levels)]
        styles = [Style(ascii=(n + i) % 2 == 0) for i in range(levels)]
        check_removed(line_for(context + text + TAILS[n % len(TAILS)], shapes, styles), kind, secret)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_with_its_first_letter_written_as_a_unicode_escape(kind: str) -> None:
    for levels in (1, 2, 3):
        for escaped_at in range(levels):
            text, secret = placed(kind, levels * 10 + escaped_at)
            first = secret.lstrip("-")[0]
            styles = [Style(escaped=frozenset({first}) if i == escaped_at else frozenset()) for i in range(levels)]
            check_removed(line_for(f"token\n{text}\n", ["value"] * levels, styles), kind, secret)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_when_the_outer_writer_escapes_the_inner_quotes_and_backslashes(kind: str) -> None:
    """A nested ``\\"`` written ``\\u005c\\"`` (or ``\\u005c\\u0022``) ends the value.

    A value class that walks into it replaces the quote that closes the nested string.
    """
    for n, (shape, escaped) in enumerate((s, e) for s in SHAPES for e in ({"\\"}, {"\\", '"'})):
        text, secret = placed(kind, 40 + n)
        outer = Style(escaped=frozenset(escaped))
        line = line_for(f'curl -H "{text}" https://api.internal/v1/jobs', ["value", shape], [outer, Style()])
        check_removed(line, kind, secret)


def test_the_false_positive_corpus_is_untouched_in_every_context() -> None:
    texts = innocent_texts(random.Random(11))
    for n, context in enumerate(UNGLUED):
        text = texts[n % len(texts)]
        levels = 1 + n % 3
        shapes = [SHAPES[(n + i) % 3] for i in range(levels)]
        styles = [Style(ascii=(n + i) % 2 == 0, slash=n % 5 == 0) for i in range(levels)]
        check_untouched(line_for(context + text + TAILS[n % len(TAILS)], shapes, styles))


# -- Hypothesis: the combinations ----------------------------------------------------

styles = st.builds(
    Style,
    ascii=st.booleans(),
    slash=st.booleans(),
    escaped=st.frozensets(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=4),
)
contexts = st.sampled_from(CONTEXTS)
tails = st.sampled_from(TAILS)
levels = st.integers(min_value=1, max_value=3)


@st.composite
def nestings(draw: st.DrawFn) -> tuple[list[str], list[Style]]:
    n = draw(levels)
    return draw(st.lists(st.sampled_from(SHAPES), min_size=n, max_size=n)), draw(
        st.lists(styles, min_size=n, max_size=n)
    )


PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, database=None)


@PROPERTY
@given(
    kind=st.sampled_from(KINDS),
    seed=st.integers(min_value=0, max_value=2**32),
    context=contexts,
    tail=tails,
    nesting=nestings(),
    escape_first=st.booleans(),
)
def test_a_secret_anywhere_a_reader_sees_it_is_removed(
    kind: str, seed: int, context: str, tail: str, nesting: tuple[list[str], list[Style]], escape_first: bool
) -> None:
    assume(kind not in IN_CONTEXT or not glued(context))
    text, secret = placed(kind, seed)
    shapes, writers = nesting
    if escape_first:
        writers = [*writers[:-1], Style(writers[-1].ascii, writers[-1].slash, writers[-1].escaped | {secret[0]})]
    check_removed(line_for(context + text + tail, shapes, writers), kind, secret)


@PROPERTY
@given(
    index=st.integers(min_value=0, max_value=len(innocent_texts(random.Random(0))) - 1),
    seed=st.integers(min_value=0, max_value=2**16),
    context=st.sampled_from(UNGLUED),
    tail=tails,
    nesting=nestings(),
)
def test_lines_without_a_secret_are_untouched(
    index: int, seed: int, context: str, tail: str, nesting: tuple[list[str], list[Style]]
) -> None:
    shapes, writers = nesting
    text = innocent_texts(random.Random(seed))[index]
    check_untouched(line_for(context + text + tail, shapes, writers))


#: A plain-text line (a pasted terminal log, a non-JSON transcript line): raw ESC bytes, and
#: escapes spelled out as text the way `echo`, `printf` or a JSON dump print them.
PLAIN_CONTEXTS = (
    "",
    "1",
    "\t",
    "\x1b[32m",
    "\x1b[1;31m",
    "token\\n",
    "X=1\\t",
    "\\u001b[32m",
    "\\x1b[1m",
    "\\033[0;32m",
    "\\e[1m",
    "echo \\\\n",
)


@pytest.mark.parametrize("kind", KINDS)
def test_plain_text_lines_see_escapes_as_boundaries(kind: str) -> None:
    for n, context in enumerate(PLAIN_CONTEXTS):
        text, secret = placed(kind, n)
        data = f"$ ./deploy.sh\n{context}{text}\\u001b[0m\n".encode()
        out, report = REDACTOR.redact_bytes(data)
        seen = out.decode()
        assert not [w for w in needles(secret) if w in seen], (kind, context, out)
        assert kind in report.counts, (kind, context, report.counts)


def test_the_false_positive_corpus_is_untouched_in_plain_lines_with_hiding_escapes() -> None:
    """Lines that are not JSON are decoded escape by escape (`\\/`, `\\u0065`, ``\\\\u0061``): still no finding."""
    for text in innocent_texts(random.Random(3)):
        for form in (text.replace("/", "\\/"), text.replace("e", "\\u0065"), "log: " + text.replace("a", "\\\\u0061")):
            line = ("$ " + form).replace("\n", " ").encode() + b"\n"
            check_untouched(line)
