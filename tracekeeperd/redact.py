"""Remove secrets from transcripts before anything leaves the machine.

Pure: bytes in, bytes plus a `Report` out.  The only I/O is on the streams a
caller hands to `Redactor.redact_stream`.

Design choices, and why:

* **Bytes, not text.**  Transcripts are JSONL written by other programs; a
  stray invalid UTF-8 byte must not stop redaction, and copying the bytes that
  are not secrets through unchanged keeps the output byte-identical to the
  input wherever nothing was found.
* **google-re2** (linear time, no catastrophic backtracking on hostile
  input or on a user's pattern) scans blocks of whole lines: one pass of an
  RE2 set finds which rule keywords occur in the block, and only those rules
  run.  Measured on the 50 MB benchmark: about 40-55 MB/s with re2 against
  about 5-6 MB/s with stdlib `re`.  `re` can still be chosen with
  ``engine="re"``; every built-in pattern is written in the subset both
  engines accept (no look-around, no back-references) and the tests run
  the corpus through both.
* **JSONL stays valid.**  A secret usually sits inside a JSON string, where
  characters may be escaped (``\\"``, ``\\n``, ``\\u002b``).  Every match is
  widened so it never splits an escape and clipped so it never swallows the
  quote that closes the string; the marker is made of characters that need
  no escaping.  As a last guard, every changed line that was valid JSON is
  parsed again, and a line that would have become invalid raises
  `RedactionError` instead of being written.
* **What a reader sees.**  A transcript line is JSON whose strings hold tool
  output, which may itself be JSON (Codex's ``function_call_output``), full
  of terminal colours.  A token printed on its own line sits right after the
  two bytes ``\\n`` (``\\\\n`` one level down), a coloured one after
  ``\\u001b[32m``: the byte before it is a letter, and a plain ``\\b`` would
  skip it.  Two layers, so that ordinary transcripts pay nothing:

  - the raw scan decides word starts as a reader would (`_starts_word`): an
    escape that stands for a separator, an ANSI sequence, or a run of digits
    that itself starts a word (``1hf_...``, a line number) all start a word;
    digits glued to a word (``deadbeef7hf_``) do not, as hashes and base64
    look like that.  Values are judged (entropy, placeholders) decoded.
  - a line whose escapes hide characters a secret is made of (``\\u0068``
    for ``h``, ``\\/``: .NET, PHP and Go write these) is also scanned as
    decoded text (`_View`): every string, key or value, decoded, strings that
    are JSON documents decoded again (up to `MAX_NESTING` levels), colour
    codes as spaces; a line that is not JSON (a pasted log, a line of an
    indented document) escape by escape.  Each finding maps back to whole
    raw escapes at every level, so only the secret's own bytes change and
    every level stays JSON.

  Measured with bench/bench_redact.py (50 MB, re2, 2 shared cores, old and
  new interleaved): 41.5 MB/s before, 39.9 MB/s after on ordinary
  transcripts; 14.5 MB/s in the worst case, where every line hides a letter
  behind ``\\uXXXX``.
* **Fail closed.**  Anything that prevents a complete redaction raises
  `RedactionError` (bad user pattern, missing engine, unreadable input, a line
  over `MAX_LINE_BYTES`).  `redact_stream` returns a `Report` only when the
  whole input was processed; after an error, whatever was written to ``dst``
  is an incomplete prefix and the caller must discard it.

Marker format: ``[REDACTED:<rule-id>]``.  (A keyed hash of the secret in the
marker was here once, never configured by the daemon: removed, issue #9.)

The rules cover the formats listed in the tracekeeper issue.  Prefixes,
lengths, keywords and entropy thresholds follow the public gitleaks default
configuration (https://github.com/gitleaks/gitleaks, config/gitleaks.toml,
MIT License, Copyright (c) 2019 Zachary Rice); the patterns themselves were
rewritten for JSON-escaped text, block scanning and the re/re2 common subset.
"""

from __future__ import annotations

import bisect
import hashlib
import importlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final, Literal, Protocol, cast

__all__ = [
    "BUILTIN_RULES",
    "MAX_LINE_BYTES",
    "Engine",
    "Finding",
    "RedactionConfig",
    "RedactionError",
    "Redactor",
    "Report",
    "Resume",
    "Rule",
]

BLOCK_BYTES: Final = 1 << 17
"""Bytes read per step; small blocks keep the keyword prefilter selective."""

MAX_LINE_BYTES: Final = 64 << 20
"""A longer line is refused: holding it whole is the price of never cutting a secret in two."""

_ALGORITHM: Final = b"escape-aware-2\0"  # 2: lines that are not JSON are decoded too
"""Part of `Redactor.ruleset_id`: the same rules applied by another algorithm redact other bytes."""

MAX_NESTING: Final = 4
"""JSON documents inside JSON strings are decoded this many levels deep (a transcript line is level 0)."""

_RULE_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_MARKER_START: Final = b"[REDACTED:"


class RedactionError(Exception):
    """Raised on anything that prevents a complete redaction; nothing may be uploaded."""


@dataclass(frozen=True)
class Rule:
    """One kind of secret.

    ``keywords`` are literals, one of which must occur (case-insensitively)
    on the same line as a match, or the match is ignored; they gate the
    regex so that most blocks never run most rules.  ``secret_group`` names
    the capture group that is replaced (0: the whole match), so context such
    as ``password=`` survives.  ``entropy`` is a minimum Shannon entropy, in
    bits per byte, of the secret.
    """

    id: str
    pattern: str
    keywords: tuple[str, ...]
    entropy: float | None = None
    secret_group: int = 0


@dataclass(frozen=True)
class RedactionConfig:
    """User-facing settings; the daemon builds one from its config file."""

    extra_rules: tuple[Rule, ...] = ()
    allow: tuple[str, ...] = ()
    """Exact secret strings that are never redacted (test fixtures, public sample keys)."""
    scrub_home: bool = False
    home: str | None = None
    user: str | None = None


@dataclass
class Finding:
    """Where a secret was; deliberately never the secret itself."""

    rule: str
    line: int
    """1-based line number."""
    column: int
    """1-based byte offset of the secret within its line."""


@dataclass
class Report:
    """What one redaction run removed; safe to show, log and put in a git note."""

    counts: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    lines: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# ---------------------------------------------------------------------------
# Built-in rules.  Order is priority: when matches overlap they are merged
# into one marker named after the earliest rule in this tuple, so a GitHub
# token inside a URL is reported as a GitHub token, not as a URL password.

_PEM_BEGIN = r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = r"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
# Some JSON writers escape "+", "/", "&" or "<" (.NET writes \u002B, PHP \/);
# a secret class must walk through those escapes or it would stop halfway
# through the secret and leave its tail in clear.  Only escapes of printable
# ASCII that a value may hold: ``\u005c`` (a backslash, the first half of a
# nested ``\"``), ``\u0022``, quotes, spaces and controls end a value, and
# walking into them would replace the quote that closes a nested string.
_ESC_CHAR = r"\\u00(?:2[13-689a-fA-F]|[34][0-9a-fA-F]|5[0-9abd-fABD-F]|6[1-9a-fA-F]|7[0-9a-eA-E])"
_ESC = _ESC_CHAR + r"|\\/"
# Inside a JSON string a key spans "\n" escapes; `(?:[^"\\\n]|\\.)` walks a
# JSON string without ever leaving it.  Without an END line (a truncated key)
# the body is taken as far as it looks like base64, through escapes at any
# nesting depth: in JSON inside JSON (Codex's function_call_output) a line
# break is written `\\n`, and one backslash would stop after the first line.
_PEM = (
    _PEM_BEGIN
    + r"(?:(?:[^\"\\\n]|\\[^\n])*?"
    + _PEM_END
    + r"|(?:[A-Za-z0-9+/=:, -]|\\+[nrt/]|\\+"
    + _ESC_CHAR.removeprefix("\\\\")
    + r")*)"
)

# Assignment context: `NAME = value`, `"name": "value"`, `name: value`,
# with the JSON-escaped quotes of a transcript (`\"name\": \"value\"`).
_ASSIGN = r"[A-Za-z0-9_.-]{0,30}(?:\\*[\"'])?\]?[ \t]*(?::=|=>|\?=|=|:)[ \t]*(?:\\*[\"'`])?"
_VALUE = r"((?:[^\s\"'`\\;]|" + _ESC + r"){8,})"
_B64 = r"(?:[A-Za-z0-9+/]|" + _ESC + r")"

BUILTIN_RULES: Final[tuple[Rule, ...]] = (
    Rule("private-key", _PEM, ("private key",)),
    Rule(
        "anthropic-api-key",
        r"\bsk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_-]{20,}",
        ("sk-ant-",),
    ),
    Rule(
        "openai-api-key",
        r"\bsk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})",
        ("sk-",),
        entropy=3.0,
    ),
    Rule("hf-token", r"\bhf_[A-Za-z0-9]{30,}", ("hf_",), entropy=3.0),
    Rule("hf-org-token", r"\bapi_org_[A-Za-z0-9]{30,}", ("api_org_",), entropy=3.0),
    Rule("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}", ("aiza",), entropy=3.0),
    Rule("google-oauth-secret", r"\bGOCSPX-[A-Za-z0-9_-]{20,}", ("gocspx-",)),
    Rule("google-oauth-token", r"\bya29\.[0-9A-Za-z_-]{20,}", ("ya29.",), entropy=3.0),
    Rule(
        "github-pat",
        r"\b(?:ghp_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})",
        ("ghp_", "github_pat_"),
        entropy=3.0,
    ),
    Rule(
        "github-token",
        r"\bgh[osur]_[A-Za-z0-9]{36,}",
        ("gho_", "ghs_", "ghu_", "ghr_"),
        entropy=3.0,
    ),
    Rule(
        "gitlab-token",
        r"\bgl(?:pat|dt|rt|cbt|ptt|soat|ft|imt|agent|oas|ffct)-[A-Za-z0-9_.-]{20,}",
        (
            "glpat-",
            "gldt-",
            "glrt-",
            "glcbt-",
            "glptt-",
            "glsoat-",
            "glft-",
            "glimt-",
            "glagent-",
            "gloas-",
            "glffct-",
        ),
        entropy=3.0,
    ),
    Rule(
        "aws-access-key-id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}\b",
        ("akia", "asia", "abia", "acca", "a3t"),
        entropy=3.0,
    ),
    Rule(
        "aws-secret-access-key",
        r"(?i)secret_?access_?key" + _ASSIGN + r"(" + _B64 + r"{40,})",
        ("secret",),
        secret_group=1,
    ),
    Rule(
        "azure-account-key",
        r"(?i)(?:AccountKey|SharedAccessKey)=(" + _B64 + r"{30,}(?:=|\\u003[dD]){0,2})",
        ("accountkey=", "sharedaccesskey="),
        secret_group=1,
    ),
    Rule(
        "azure-sas-token",
        r"[?&]sig=([A-Za-z0-9%+/]{30,}(?:=|%3[dD]){0,2})",
        ("sig=",),
        secret_group=1,
    ),
    Rule(
        "azure-ad-client-secret",
        r"\b[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
        ("q~",),
        entropy=3.0,
    ),
    Rule(
        "slack-webhook-url",
        r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{20,}",
        ("hooks.slack.com",),
    ),
    Rule(
        "slack-token",
        r"\bx(?:ox[abposre]|app-[0-9])-[A-Za-z0-9-]{10,}",
        ("xox", "xapp-"),
        entropy=2.5,
    ),
    Rule(
        "stripe-key",
        r"\b(?:(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{20,}|whsec_[A-Za-z0-9]{20,})",
        ("sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_", "whsec_"),
        entropy=3.0,
    ),
    Rule("npm-token", r"\bnpm_[A-Za-z0-9]{36,}", ("npm_",), entropy=3.0),
    Rule(
        "pypi-token",
        r"\bpypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{40,}",
        ("pypi-ag",),
    ),
    Rule(
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        ("eyj",),
        entropy=3.0,
    ),
    Rule(
        "url-password",
        r"://[^\s:@/?#\"'\\]{0,128}:((?:[^\s/\"'\\]|" + _ESC_CHAR + r")+)@[A-Za-z0-9_~%.\[\]-]",
        ("://",),
        secret_group=1,
    ),
    Rule(
        "auth-header",
        r"(?i)authorization[ \t]*:[ \t]*(?:bearer|basic|token|bot)[ \t]+"
        r"((?:[A-Za-z0-9._~+/=-]|" + _ESC + r"){16,})",
        ("authorization",),
        entropy=3.0,
        secret_group=1,
    ),
    Rule(
        "cli-password",
        r"-(?:u|-user|-password|-passwd)(?:\\*[\"'])?[ \t=]+(?:\\*[\"'])?"
        r"((?:[^\s\"'\\]|" + _ESC + r"){4,})",
        ("-u", "--user", "--pass"),
        secret_group=1,
    ),
    Rule(
        "generic-password",
        r"(?i)(?:passw(?:or)?d|passphrase)" + _ASSIGN + _VALUE,
        ("passw", "passphrase"),
        entropy=2.5,
        secret_group=1,
    ),
    Rule(
        "generic-secret",
        r"(?i)(?:secret|token|credentials?|"
        r"(?:api|access|private|signing|encryption|master|app|session)[_.-]?key)" + _ASSIGN + _VALUE,
        ("secret", "token", "credential", "key"),
        entropy=3.5,
        secret_group=1,
    ),
)
"""Specific formats first, context-based rules last."""

_USER_RULES_BEFORE: Final = "url-password"
"""User rules rank after the vendor formats and before the context-based rules."""


# Values that assignment rules see constantly and that are not secrets:
# variable references, templates, masks, paths and plain identifiers.
_PLACEHOLDER = re.compile(
    rb"(?:\$\{\{|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\$\(|%\(?[A-Za-z_]|\{\{|\{[A-Za-z_][A-Za-z0-9_.]*\}"
    rb"|<[A-Za-z][A-Za-z0-9 _-]*>|\*{3}|\.{3}|x{6}|X{6}|https?://"
    rb"|process\.env|os\.environ|os\.getenv|getenv|env\(|ENV\[|secrets\.|vars\.)"
)
_PATH = re.compile(rb"(?:/|~/|\./|\.\./)[A-Za-z0-9_.~/-]*\Z")
_NUMERIC = re.compile(rb"[0-9.,:eE+\-\[\]{}()]+\Z")
_IDENTIFIER = re.compile(rb"[A-Za-z_.()\[\]-]+\Z")


def _is_identifier(value: bytes) -> bool:
    """Tell ``settings.SECRET_KEY`` or ``getToken`` from random letters.

    A separator or a mostly one-case word reads as code; a long run of mixed
    case without separators reads as a generated secret.
    """
    if not _IDENTIFIER.match(value):
        return False
    if any(ch in value for ch in b"._-()[]"):
        return True
    upper = sum(1 for ch in value if 65 <= ch <= 90)
    return len(value) < 16 or not 0.25 <= upper / len(value) <= 0.75


def _placeholder(value: bytes) -> bool:
    """Variable references, templates, masks and paths: the usual non-secret values."""
    if _PLACEHOLDER.match(value):
        return True
    return value.count(b"/") >= 2 and bool(_PATH.match(value))


_IN_USERINFO = re.compile(rb"://[^\s/@\"'\\]*\Z")


def _reject_assignment(value: bytes, context: bytes, before: bytes) -> bool:
    """Skip placeholders, and ``token:`` inside ``https://x-access-token:...@host``.

    The URL rule owns credentials in a URL; matching them here would run the
    value over ``@host/path`` and redact the host too.
    """
    return _placeholder(value) or _is_identifier(value) or bool(_IN_USERINFO.search(before))


def _reject_secret_assignment(value: bytes, context: bytes, before: bytes) -> bool:
    """As for passwords, and numbers too: ``"total_tokens": 1234567890`` is a count."""
    return bool(_NUMERIC.match(value)) or _reject_assignment(value, context, before)


def _reject_url_password(value: bytes, context: bytes, before: bytes) -> bool:
    return _placeholder(value) or value.strip(b"*xX") == b""


def _reject_cli_password(value: bytes, context: bytes, before: bytes) -> bool:
    """``--password X`` is a secret; ``-u name:pass`` too, but not ``docker run -u 1000:1000``."""
    if not _word_start(before) or _placeholder(value) or value.strip(b"*xX") == b"":
        return True  # an option starts a word: not "x-user:" or "re-use"
    if b"--pass" in context:
        return False
    name, _, secret = value.rpartition(b":")
    return not name or not secret or secret.isdigit() or _placeholder(secret)


_REJECTS: Final[dict[str, Callable[[bytes, bytes, bytes], bool]]] = {
    "generic-password": _reject_assignment,
    "generic-secret": _reject_secret_assignment,
    "url-password": _reject_url_password,
    "cli-password": _reject_cli_password,
}


def shannon_entropy(data: bytes) -> float:
    """Bits per byte: a random 40-character token scores about 5, an English word about 3."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


# ---------------------------------------------------------------------------
# Word starts as a reader sees them.  Transcripts are JSON, often JSON inside
# JSON, full of terminal output: the byte before a token may be the last byte
# of ``\n`` (or ``\\n`` one level down), of ``\u001b[32m`` or of a raw
# colour code.  A reader sees a line break or a colour change there, so a
# token anchored on a word start must still match.

_WORD_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGITS: Final = frozenset(b"0123456789")

# An escape or a terminal sequence that ends where a match starts.  Any run of
# backslashes: one level down, ``\n`` is written ``\\n``; three levels down,
# ``\\\\n``.  ESC is spelled the ways JSON, C, Python and shells print it.
_ESC_SPELLINGS = rb"(?:\x1b|\\+(?:u001[bB]|x1[bB]|033|e))"
_ESCAPE_TAIL = re.compile(
    rb"(?:"
    + _ESC_SPELLINGS
    + rb"(?:\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z])"  # CSI (colours, bold, erase) and charset selection
    + rb"|\\+(?P<ws>[ntrbf])"  # \n \t \r \b \f
    + rb"|\\+u(?P<hex>[0-9a-fA-F]{4})"  # \uXXXX: decided by the character it stands for
    + rb")\Z"
)
_TAIL_WINDOW: Final = 48
_MAX_DIGIT_RUN: Final = 16


def _starts_word(buf: bytes, pos: int, floor: int) -> bool:
    """Whether a match at ``pos`` starts a word for a reader of the decoded text.

    True after a non-word byte (as ``\\b`` says), after an escape that stands
    for a non-word character (``\\n``, ``\\t``, ``\\u00e9`` ...), after an ANSI
    sequence, and after a run of digits that itself starts a word
    (``"1hf_..."``, a line number).  A run of digits glued to a word
    (``deadbeef7hf_...``) still does not: that is how hashes and base64 look.
    """
    for _ in range(_MAX_DIGIT_RUN + 1):
        if pos <= floor or buf[pos - 1] not in _WORD_CHARS:
            return True
        tail = _ESCAPE_TAIL.search(buf, max(floor, pos - _TAIL_WINDOW), pos)
        if tail is None:
            if buf[pos - 1] not in _DIGITS:
                return False
            pos -= 1
            continue
        code = tail.group("hex")
        if code is None:
            return True  # a control character or a terminal sequence
        char = int(code, 16)
        if char >= 0x80 or char not in _WORD_CHARS:
            return True
        if char not in _DIGITS:
            return False  # \u0061 is the letter a
        pos = tail.start()
    return False


def _word_start(before: bytes) -> bool:
    """Whether an option after ``before`` starts a word: after white space (``_after_space``),
    or after a quote that itself opens a word or a (JSON) string, escaped to any depth:
    ``{"args": "--password X"}``, ``'--password' X``."""
    stripped = before.rstrip(b"\"'")
    if stripped == before:
        return _after_space(before)
    stripped = stripped.rstrip(b"\\")
    return _after_space(stripped) or stripped[-1:] in (b":", b",", b"[", b"{", b"=", b"(")


def _after_space(before: bytes) -> bool:
    """Whether ``before`` ends where a shell word starts: white space, its escape, or a terminal sequence."""
    if before[-1:] in (b"", b" ", b"\t", b"\n", b"\r"):
        return True
    tail = _ESCAPE_TAIL.search(before, max(0, len(before) - _TAIL_WINDOW))
    return tail is not None and tail["hex"] is None and tail["ws"] in (None, b"n", b"t", b"r")


# ---------------------------------------------------------------------------
# Regex engines.  Both are used through this tiny protocol so the choice is
# made once, in the constructor.


class _Match(Protocol):
    def span(self, group: int = 0, /) -> tuple[int, int]: ...


class _Pattern(Protocol):
    @property
    def groups(self) -> int: ...

    def finditer(self, string: bytes, /) -> Iterator[_Match]: ...


Engine = Literal["re2", "re"]


KeywordFilter = Callable[[bytes], set[int]]
"""Given a block, the indices of the keywords that occur in it (case-insensitively)."""


class _Engine(Protocol):
    def compile(self, pattern: str, *, trusted: bool) -> _Pattern:
        """``trusted``: a built-in pattern, written never to cross a newline."""
        ...

    def keyword_filter(self, keywords: list[bytes]) -> KeywordFilter: ...


class _StdlibEngine:
    def compile(self, pattern: str, *, trusted: bool) -> _Pattern:
        return re.compile(pattern.encode())

    def keyword_filter(self, keywords: list[bytes]) -> KeywordFilter:
        def present(block: bytes) -> set[int]:
            lowered = block.lower()
            return {i for i, k in enumerate(keywords) if k in lowered}

        return present


class _Re2Engine:
    """google-re2 on bytes: Latin-1 so any byte is one character, and no match crosses a line."""

    def __init__(self) -> None:
        try:
            self._re2 = importlib.import_module("re2")
        except ImportError as exc:
            raise RedactionError("redaction engine google-re2 is not installed (pip install google-re2)") from exc

    def _options(self, *, literal: bool = False, never_nl: bool = True) -> object:
        options = self._re2.Options()
        options.encoding = self._re2.Options.Encoding.LATIN1
        # never_nl costs re2 about a third of its speed; built-in patterns
        # exclude newlines themselves, user patterns get the guarantee.
        options.never_nl = never_nl
        options.log_errors = False
        if literal:
            options.literal = True
            options.case_sensitive = False
        return options

    def compile(self, pattern: str, *, trusted: bool) -> _Pattern:
        return cast(_Pattern, self._re2.compile(pattern.encode(), self._options(never_nl=not trusted)))

    def keyword_filter(self, keywords: list[bytes]) -> KeywordFilter:
        """One DFA pass over the block finds every keyword, instead of one scan per keyword."""
        keyword_set = self._re2.Set.SearchSet(self._options(literal=True))
        for keyword in keywords:
            keyword_set.Add(keyword)
        keyword_set.Compile()

        def present(block: bytes) -> set[int]:
            return set(keyword_set.Match(block) or ())

        return present


def _engine(name: Engine) -> _Engine:
    return _StdlibEngine() if name == "re" else _Re2Engine()


@dataclass(frozen=True)
class _Compiled:
    id: str
    pattern: str
    marker_id: bytes
    regex: _Pattern
    keywords: tuple[bytes, ...]
    entropy: float | None
    group: int
    reject: Callable[[bytes, bytes, bytes], bool] | None
    word_start: bool
    """The pattern began with ``\\b``: the byte before the match must not be a word byte."""


@dataclass
class _Span:
    start: int
    end: int
    rank: int
    counted: bool = True
    """False for the continuation lines of a multi-line key: one key, one finding."""


@dataclass
class _StreamState:
    in_pem: bool = False


@dataclass(frozen=True)
class Resume:
    """Where a redaction of a growing file stopped, so the next piece continues it exactly.

    Small and plain (two fields) so a caller can keep it on disk next to the redacted copy:
    the line count numbers the findings of the next piece, and `in_pem` carries a private key
    written over several plain-text lines across the cut, which a fresh start would miss.
    """

    lines: int = 0
    in_pem: bool = False


_PEM_OPEN = re.compile(rb"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[ \t]*\r?\Z")
_PEM_BODY = re.compile(rb"[ \t]*(?:[A-Za-z0-9+/=]*|[A-Za-z-]+:[^\n]*)[ \t]*\r?\Z")
_PEM_CLOSE = re.compile(rb"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----")


class Redactor:
    """Compiled once, reused for every job; holds no per-run state, so it is thread-safe.

    ``engine`` is "re2" (the default and the one to ship) or "re" (stdlib,
    for comparison).  `ruleset_id` names the rule set for the git note and
    `rule_ids` lists the rules in priority order.
    """

    def __init__(
        self,
        config: RedactionConfig = RedactionConfig(),
        *,
        engine: Engine = "re2",
    ) -> None:
        backend = _engine(engine)
        self.engine: Engine = engine
        self._config = config
        self._allow = frozenset(s.encode() for s in config.allow)
        self._rules = self._compile_rules(config.extra_rules, backend)
        keywords = sorted({k for rule in self._rules for k in rule.keywords})
        self._keywords_in = backend.keyword_filter(keywords)
        self._rules_for = [[rank for rank, rule in enumerate(self._rules) if k in rule.keywords] for k in keywords]
        self._pem_rank = next(i for i, r in enumerate(self._rules) if r.id == "private-key")
        self._scrub = _scrubber(config)
        digest = hashlib.sha256(_ALGORITHM)
        for rule in self._rules:
            words = ",".join(k.decode() for k in rule.keywords)
            digest.update(f"{rule.id}\0{rule.pattern}\0{rule.entropy}\0{words}\0{rule.group}\0".encode())
        self.ruleset_id = digest.hexdigest()[:12]
        """Names the rules that ran, for the git note; changes when any rule changes."""
        private = digest.copy()
        scrub = (b"scrub", (config.home or "").encode(), (config.user or "").encode()) if config.scrub_home else ()
        for value in (*sorted(self._allow), b"\0", *scrub):
            private.update(len(value).to_bytes(8, "big") + value)
        self.output_id = private.hexdigest()
        """Changes whenever the same input could redact to other bytes: the rules, and what a
        note must not publish (the allow list's strings; the home directory and user name a
        scrub replaces). A redacted copy on disk is continued only under the same `output_id`."""

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(rule.id for rule in self._rules)

    # -- public API -------------------------------------------------------

    def redact_line(self, line: bytes, lineno: int, report: Report) -> bytes:
        """Redact one line (with or without its newline); multi-line keys need the stream API."""
        return self._guarded(lambda: self._redact_block(line, lineno, report, _StreamState()))

    def redact_stream(self, src: BinaryIO, dst: BinaryIO) -> Report:
        """Copy ``src`` to ``dst`` redacted, holding one block of lines in memory.

        Returns only after the last byte; on `RedactionError` ``dst`` holds an
        incomplete prefix that the caller must discard.
        """
        report = Report()
        state = _StreamState()
        self._guarded(lambda: self._pump(src, dst, report, state))
        return report

    def redact_bytes(self, data: bytes) -> tuple[bytes, Report]:
        """Same result as `redact_stream`, for data already in memory."""
        out, report, _ = self.redact_piece(data, Resume())
        return out, report

    def redact_piece(self, data: bytes, resume: Resume) -> tuple[bytes, Report, Resume]:
        """Redact the next piece of a file, continuing where `resume` left off.

        ``data`` must start at a line start (the previous piece ended with a newline). Pieces
        redacted one after the other give exactly the bytes one pass over the whole file gives,
        so a growing transcript is redacted once, piece by piece, without being held whole.
        Findings are numbered from ``resume.lines + 1``; the returned `Resume` continues after
        this piece. On `RedactionError` nothing of the piece may be kept.
        """
        report = Report(lines=resume.lines)
        state = _StreamState(in_pem=resume.in_pem)
        out: list[bytes] = []

        def run() -> None:
            pos = 0
            while pos < len(data):
                cut = data.rfind(b"\n", pos, pos + BLOCK_BYTES) + 1
                if cut <= pos:
                    cut = data.find(b"\n", pos) + 1 or len(data)
                    if cut - pos > MAX_LINE_BYTES:
                        raise _too_long(report.lines + 1)
                out.append(self._redact_block(data[pos:cut], report.lines + 1, report, state))
                pos = cut

        self._guarded(run)
        lines, report.lines = report.lines, report.lines - resume.lines
        return b"".join(out), report, Resume(lines=lines, in_pem=state.in_pem)

    # -- construction -----------------------------------------------------

    @staticmethod
    def _compile_rules(extra: tuple[Rule, ...], backend: _Engine) -> tuple[_Compiled, ...]:
        seen = {rule.id for rule in BUILTIN_RULES}
        users: list[_Compiled] = []
        for rule in extra:
            if rule.id in seen:
                raise RedactionError(f"redaction rule id {rule.id!r} is used twice")
            seen.add(rule.id)
            users.append(_compile_rule(rule, backend, None, trusted=False))
        builtins = [_compile_rule(r, backend, _REJECTS.get(r.id), trusted=True) for r in BUILTIN_RULES]
        split = next(i for i, r in enumerate(builtins) if r.id == _USER_RULES_BEFORE)
        return tuple(builtins[:split] + users + builtins[split:])

    # -- the work ---------------------------------------------------------

    def _guarded(self, work: Callable[[], bytes | None]) -> bytes:
        """Turn every failure into RedactionError so callers need one except clause."""
        try:
            result = work()
        except RedactionError:
            raise
        except Exception as exc:  # fail closed: any failure means "not redacted"
            raise RedactionError(f"redaction failed: {type(exc).__name__}: {exc}") from exc
        return result or b""

    def _pump(self, src: BinaryIO, dst: BinaryIO, report: Report, state: _StreamState) -> None:
        buf = bytearray()
        while chunk := src.read(BLOCK_BYTES):
            buf += chunk
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                if len(buf) > MAX_LINE_BYTES:
                    raise _too_long(report.lines + 1)
                continue
            dst.write(self._redact_block(bytes(buf[:cut]), report.lines + 1, report, state))
            del buf[:cut]
        if buf:
            if len(buf) > MAX_LINE_BYTES:
                raise _too_long(report.lines + 1)
            dst.write(self._redact_block(bytes(buf), report.lines + 1, report, state))

    def _redact_block(self, block: bytes, first_line: int, report: Report, state: _StreamState) -> bytes:
        """Redact whole lines; ``first_line`` is the number of the block's first line."""
        report.bytes_in += len(block)
        report.lines += block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)
        spans = _inside_json_strings(block, self._find(block))
        if state.in_pem or any(s.rank == self._pem_rank for s in spans):
            spans = self._pem_lines(block, spans, state)
        spans += self._find_decoded(block)
        out = self._rewrite(block, _merge(spans), first_line, report) if spans else self._scrub(block)
        report.bytes_out += len(out)
        return out

    def _find(self, block: bytes, *, decoded: bool = False) -> list[_Span]:
        """Run the rules whose keywords occur in the block; keep the matches worth redacting.

        ``decoded``: the block is a `_View`, text with no JSON escapes left,
        whose spans are made JSON-safe when they are mapped back.
        """
        ranks = sorted({rank for k in self._keywords_in(block) for rank in self._rules_for[k]})
        spans: list[_Span] = []
        for rank in ranks:
            rule = self._rules[rank]
            for match in rule.regex.finditer(block):
                whole = match.span(0)
                if (
                    rule.word_start
                    and whole[0] > 0
                    and block[whole[0] - 1] in _WORD
                    and not _starts_word(block, whole[0], block.rfind(b"\n", 0, whole[0]) + 1)
                ):
                    continue
                start, end = match.span(rule.group)
                if start < 0 or end <= start:
                    continue
                if not decoded:
                    start, end = _json_safe(block, start, end)
                if end > start and self._wanted(rule, block, (start, end), whole):
                    spans.append(_Span(start, end, rank))
        return spans

    def _find_decoded(self, block: bytes) -> list[_Span]:
        """Scan the decoded text of lines whose escapes hide characters a secret is made of.

        The raw scan sees through the escapes that stand for separators
        (`_starts_word`, and patterns that accept ``\\"``); it cannot see a
        token whose letters are written ``\\u0068``, or a URL written
        ``https:\\/\\/`` (PHP, .NET and Go write such escapes).  Only lines that
        hold one are decoded, so ordinary transcripts pay one regex pass.  A
        JSON line is decoded string by string (`_View.add_line`); any other
        line (a pasted log, a line of an indented JSON document) escape by
        escape (`_View.add_text_line`).
        """
        view = _View()
        pos = 0
        while (found := _HIDING_ESCAPE.search(block, pos)) is not None:
            start = block.rfind(b"\n", 0, found.start()) + 1
            pos = _line_end(block, found.start())
            line = block[start:pos]
            if _is_json(line):
                view.add_line(line, start)
            else:
                view.add_text_line(line, start)
            pos += 1
        if not view.text:
            return []
        text = bytes(view.text)
        spans = self._find(text, decoded=True)
        if any(s.rank == self._pem_rank for s in spans):
            spans = self._pem_lines(text, spans, _StreamState())
        return [mapped for span in spans if (mapped := view.to_raw(span)) is not None]

    def _wanted(self, rule: _Compiled, block: bytes, span: tuple[int, int], whole: tuple[int, int]) -> bool:
        start, end = span
        secret = _unescaped(block[start:end])  # judged as a reader sees it: "he\\u0061der" is "header"
        if _MARKER_START in secret or secret in self._allow:
            return False
        line_start = block.rfind(b"\n", 0, whole[0]) + 1
        # The keyword must be on the match's own line, so the result never
        # depends on where a block happened to be cut.
        if not _has_keyword(rule.keywords, block, whole, line_start):
            return False
        before = block[max(line_start, whole[0] - 256) : whole[0]]
        if before.rfind(_MARKER_START) > before.rfind(b"]"):
            return False  # inside a marker from an earlier run: redaction is idempotent
        if rule.reject is not None and rule.reject(secret, block[whole[0] : whole[1]], before):
            return False
        return rule.entropy is None or shannon_entropy(secret) >= rule.entropy

    def _pem_lines(self, block: bytes, spans: list[_Span], state: _StreamState) -> list[_Span]:
        """Extend keys written over several real lines (plain text, not JSON) to their END line.

        Inside JSONL a key is one string with ``\\n`` escapes and the regex
        handles it; here a header alone on its line opens a block that runs
        over base64 and ``Header: value`` lines to the END line.
        """
        opened = {s.end for s in spans if s.rank == self._pem_rank}
        extra: list[_Span] = []
        pos = 0
        while pos < len(block):
            nl = block.find(b"\n", pos)
            end = len(block) if nl < 0 else nl
            line = block[pos:end]
            body_end = end - 1 if line.endswith(b"\r") else end  # keep CRLF line endings
            if state.in_pem:
                if _PEM_CLOSE.search(line):
                    extra.append(_Span(pos, body_end, self._pem_rank, counted=False))
                    state.in_pem = False
                elif _PEM_BODY.match(line) and line.strip():
                    extra.append(_Span(pos, body_end, self._pem_rank, counted=False))
                elif line.strip():
                    state.in_pem = False
            elif any(pos <= e <= end for e in opened) and _PEM_OPEN.search(line):
                state.in_pem = True
            pos = end + 1
        return spans + extra

    def _rewrite(self, block: bytes, spans: list[_Span], first_line: int, report: Report) -> bytes:
        out: list[bytes] = []
        touched: set[int] = set()
        pos = 0
        line, line_start = first_line, 0
        for span in spans:
            newlines = block.count(b"\n", pos, span.start)
            if newlines:
                line += newlines
                line_start = block.rfind(b"\n", 0, span.start) + 1
            out.append(self._scrub(block[pos : span.start]))
            rule = self._rules[span.rank]
            out.append(b"[REDACTED:" + rule.marker_id + b"]")
            touched.add(line_start)
            if span.counted:
                report.counts[rule.id] = report.counts.get(rule.id, 0) + 1
                report.findings.append(Finding(rule.id, line, span.start - line_start + 1))
            pos = span.end
        out.append(self._scrub(block[pos:]))
        result = b"".join(out)
        _check_json(block, result, touched, first_line)
        return result


# ---------------------------------------------------------------------------
# Helpers with no state.


def _compile_rule(
    rule: Rule,
    backend: _Engine,
    reject: Callable[[bytes, bytes, bytes], bool] | None,
    *,
    trusted: bool,
) -> _Compiled:
    """Validate one rule so a broken user pattern stops the daemon at start, not mid-job.

    A leading ``\\b`` before a word character is checked in Python instead:
    it stops re2 from scanning for the literal prefix, which is five times
    faster than its general search, and `_starts_word` knows what a reader
    sees before the match (``\\n``, a colour code), which ``\\b`` does not.
    A built-in pattern may also start ``\\b[`` or ``\\b(``; then the Python
    check is the one that applies (for the Azure client secret, whose first
    class also holds ``~`` and ``.``, it is the "not glued to a word" its
    pattern used to spell out).
    """
    if not _RULE_ID.match(rule.id):
        raise RedactionError(f"redaction rule id {rule.id!r} must be lowercase kebab-case")
    if not rule.keywords or not all(k.strip() for k in rule.keywords):
        raise RedactionError(f"redaction rule {rule.id!r} needs at least one non-empty keyword")
    pattern = rule.pattern
    word_start = pattern.startswith("\\b") and (pattern[2:3].isalnum() or (trusted and pattern[2:3] in ("[", "(")))
    if word_start:
        pattern = pattern[2:]
    try:
        regex = backend.compile(pattern, trusted=trusted)
    except Exception as exc:  # re.error, re2.error: both mean "bad pattern"
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RedactionError(f"redaction rule {rule.id!r}: invalid pattern {rule.pattern!r}: {reason}") from exc
    if not 0 <= rule.secret_group <= regex.groups:
        raise RedactionError(
            f"redaction rule {rule.id!r}: secret_group {rule.secret_group} but the pattern has {regex.groups} group(s)"
        )
    return _Compiled(
        id=rule.id,
        pattern=rule.pattern,
        marker_id=rule.id.encode(),
        regex=regex,
        keywords=tuple(k.lower().encode() for k in rule.keywords),
        entropy=rule.entropy,
        group=rule.secret_group,
        reject=reject,
        word_start=word_start,
    )


def _has_keyword(keywords: tuple[bytes, ...], block: bytes, whole: tuple[int, int], line_start: int) -> bool:
    match = block[whole[0] : whole[1]].lower()
    if any(k in match for k in keywords):
        return True
    line = block[line_start : _line_end(block, whole[0])].lower()
    return any(k in line for k in keywords)


def _too_long(lineno: int) -> RedactionError:
    return RedactionError(f"line {lineno} is longer than {MAX_LINE_BYTES} bytes; not redacted")


_HEX = frozenset(b"0123456789abcdefABCDEF")
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _json_safe(block: bytes, start: int, end: int) -> tuple[int, int]:
    """Widen a match to whole JSON escapes and stop it at a closing quote or line end.

    Replacing half of ``\\n`` or ``\\u002b`` would leave an invalid escape, and
    eating an unescaped quote would merge two JSON strings; both would turn a
    valid JSONL line into garbage.  Only user patterns can do either, but the
    check is cheap and runs for every match.
    """
    quiet = block.find(b"\\", max(0, start - 5), end) < 0 and block.find(b"\n", start, end) < 0
    if quiet and block.find(b'"', start + 1, end) < 0:
        return start, end  # nothing escaped nearby: the common case
    # Start inside an escape?  Move back to its backslash.
    for back in range(1, 6):
        i = start - back
        if i < 0 or block[i] != 0x5C or _escaped(block, i):
            continue
        if back == 1 or (block[i + 1] == 0x75 and all(c in _HEX for c in block[i + 2 : start])):
            start = i
            break
    i = start
    while i < end:
        ch = block[i]
        if ch == 0x0A or (ch == 0x22 and i > start):
            return start, i
        if ch == 0x5C:
            i += 6 if block[i + 1 : i + 2] == b"u" else 2
        else:
            i += 1
    return start, min(i, _line_end(block, start))


def _escaped(block: bytes, i: int) -> bool:
    """True when the byte at ``i`` is preceded by an odd run of backslashes."""
    n = 0
    while i - n - 1 >= 0 and block[i - n - 1] == 0x5C:
        n += 1
    return n % 2 == 1


def _line_end(block: bytes, pos: int) -> int:
    nl = block.find(b"\n", pos)
    return len(block) if nl < 0 else nl


def _merge(spans: list[_Span]) -> list[_Span]:
    """Union overlapping spans; the merged one takes the best-ranked rule.

    Union rather than "first wins": a partial overlap must never leave the
    tail of a secret in clear.
    """
    spans.sort(key=lambda s: (s.start, s.rank))
    merged: list[_Span] = []
    for span in spans:
        last = merged[-1] if merged else None
        if last is None or span.start >= last.end:
            merged.append(_Span(span.start, span.end, span.rank, span.counted))
            continue
        last.end = max(last.end, span.end)
        last.rank = min(last.rank, span.rank)
        last.counted = last.counted or span.counted
    return merged


# A JSON string literal, unrolled ("[^"\\]*(?:\\.[^"\\]*)*"): five times faster
# in `re` than the alternation it replaces, for the same strings.
_JSON_STRING = re.compile(rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"')


def _inside_json_strings(block: bytes, spans: list[_Span]) -> list[_Span]:
    """On a valid JSON line, keep only matches inside string literals.

    Outside strings a JSON line holds numbers, ``true`` and punctuation, never a
    secret, and replacing any of them would break the line.  Only lines with a
    match are parsed.
    """
    if not spans:
        return spans
    kept: list[_Span] = []
    by_line: dict[int, list[_Span]] = {}
    for span in spans:
        by_line.setdefault(block.rfind(b"\n", 0, span.start) + 1, []).append(span)
    for start, group in by_line.items():
        line = block[start : _line_end(block, start)]
        if not _is_json(line):
            kept.extend(group)
            continue
        strings = [(start + m.start() + 1, start + m.end() - 1) for m in _JSON_STRING.finditer(line)]
        kept.extend(s for s in group if any(a <= s.start and s.end <= b for a, b in strings))
    return kept


# Escapes that stand for a character a secret or its context is made of:
# \u0020-\u007f (letters, digits, ``+``, ``&``, ``=``), and ``\/``.  The last
# backslash of a run is enough, so JSON inside JSON is caught too, and a
# pattern that starts with one literal byte is ten times faster than ``\\+``.
_HIDING_ESCAPE = re.compile(rb"\\(?:u00[2-7][0-9a-fA-F]|/)")
_HIDING_RUN = re.compile(rb"\\+(?:u(00[2-7][0-9a-fA-F])|/)")
_SIMPLE_ESCAPES: Final = {
    ord(k): v
    for k, v in {'"': b'"', "\\": b"\\", "/": b"/", "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t"}.items()
}
# A terminal sequence in decoded text: CSI (colours), OSC (titles, links) and charset selection.
_ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[()][0-9A-Za-z])")


class _Map:
    """Where each byte of a decoded text came from in the raw block.

    Sorted pieces: an *exact* piece maps byte for byte (text that needed no
    decoding); any other piece is one decoded character or terminal sequence,
    and each of its bytes maps to the whole raw escape.  A few pieces per
    escape instead of two integers per byte keeps decoding cheap.
    """

    __slots__ = ("exact", "his", "los", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.los: list[int] = []
        self.his: list[int] = []
        self.exact: list[bool] = []

    @classmethod
    def identity(cls, offset: int, length: int) -> _Map:
        raw = cls()
        raw.add(0, offset, offset + length, exact=True)
        return raw

    def add(self, start: int, lo: int, hi: int, *, exact: bool) -> None:
        if (
            exact
            and self.exact
            and self.exact[-1]
            and self.his[-1] == lo
            and start - self.starts[-1] == lo - self.los[-1]
        ):
            self.his[-1] = hi  # continues the last piece
            return
        self.starts.append(start)
        self.los.append(lo)
        self.his.append(hi)
        self.exact.append(exact)

    def lo(self, pos: int) -> int:
        """First raw byte behind the byte at ``pos``."""
        i = bisect.bisect_right(self.starts, pos) - 1
        return self.los[i] + (pos - self.starts[i]) if self.exact[i] else self.los[i]

    def hi(self, pos: int) -> int:
        """End of the raw bytes behind the byte at ``pos``."""
        i = bisect.bisect_right(self.starts, pos) - 1
        return self.los[i] + (pos - self.starts[i]) + 1 if self.exact[i] else self.his[i]

    def extend(self, src: _Map, a: int, b: int, at: int) -> None:
        """Append the pieces of ``src`` for its bytes ``a:b``, placed at ``at``."""
        i = bisect.bisect_right(src.starts, a) - 1
        while i < len(src.starts) and src.starts[i] < b:
            first = max(src.starts[i], a)
            if src.exact[i]:
                last = min(b, src.starts[i + 1] if i + 1 < len(src.starts) else b)
                lo = src.los[i] + (first - src.starts[i])
                self.add(at + first - a, lo, lo + (last - first), exact=True)
            else:
                self.add(at + first - a, src.los[i], src.his[i], exact=False)
            i += 1

    def sliced(self, a: int, b: int) -> _Map:
        part = _Map()
        part.extend(self, a, b, 0)
        return part


class _Source:
    """A text at some level of a JSON line, and where its bytes came from.

    The map is built only when a secret is found in the text: decoding with
    ``json.loads`` runs in C, decoding while keeping a map runs in Python, and
    almost no text holds a secret.
    """

    __slots__ = ("_a", "_b", "_decode", "_map", "_parent", "data")

    def __init__(
        self,
        data: bytes,
        raw: _Map | None = None,
        parent: _Source | None = None,
        a: int = 0,
        b: int = 0,
        *,
        decode: bool = False,
    ) -> None:
        self.data = data
        self._map = raw
        self._parent = parent
        self._a, self._b = a, b
        self._decode = decode
        """True: ``data`` is the decoded JSON string ``parent.data[a:b]``; False: the slice itself."""

    @property
    def map(self) -> _Map:
        if self._map is None:
            assert self._parent is not None
            parent = self._parent
            if self._decode:
                data, self._map = _decode_string(parent.data, parent.map, self._a, self._b)
                if data != self.data:
                    raise RedactionError("decoding a JSON string twice gave two texts")  # fail closed
            else:
                self._map = parent.map.sliced(self._a, self._b)
        return self._map


@dataclass
class _Region:
    """A run of view bytes made from ``source.data[a:b]``: copied as is, or as plain text."""

    start: int
    end: int
    source: _Source
    a: int
    plain: bool
    """Plain text: terminal sequences became one space each, so the map is built apart."""
    b: int = 0
    syntax: bool = False
    """Copied from a JSON document: syntax, and strings that needed no decoding."""
    plain_map: _Map | None = None

    def in_string(self, start: int, end: int) -> bool:
        """Whether view bytes ``start:end`` are inside one string of the JSON they were copied from.

        Plain text is a string's text.  A copied run of a document holds
        syntax and strings without escapes: found by scanning it again, which
        happens only for the rare secret found there.
        """
        if self.plain or not self.syntax:
            return True
        first, last = self.a + start - self.start, self.a + end - self.start
        for literal in _JSON_STRING.finditer(self.source.data):
            if literal.end() > first:
                return literal.start() < first and last < literal.end()
        return False

    def raw(self, start: int, end: int) -> tuple[int, int]:
        """The raw bytes behind view bytes ``start:end`` (inside this region)."""
        if not self.plain:
            where = self.source.map
            return where.lo(self.a + start - self.start), where.hi(self.a + end - 1 - self.start)
        if self.plain_map is None:
            self.plain_map = _plain_map(self.source.data, self.source.map, self.a, self.b)
        return self.plain_map.lo(start - self.start), self.plain_map.hi(end - 1 - self.start)


def _plain_map(text: bytes, where: _Map, a: int, b: int) -> _Map:
    """The map of ``text[a:b]`` with each terminal sequence written as one space."""
    out = _Map()
    length = 0
    for seq in _ANSI.finditer(text, a, b):
        out.extend(where, a, seq.start(), length)
        length += seq.start() - a
        out.add(length, where.lo(seq.start()), where.hi(seq.end() - 1), exact=False)
        length += 1
        a = seq.end()
    out.extend(where, a, b, length)
    return out


class _View:
    """Text as a reader sees JSON lines: every string decoded, JSON inside strings too, colours gone.

    Each region knows the raw bytes behind it: a decoded character maps to
    its whole escape, so a secret found here maps back to raw bytes that
    start and end on escape boundaries at every level, and a marker (which
    needs no escaping) replaces them without breaking any level's JSON.  A
    secret must lie inside one ``content`` interval (a string's text at the
    deepest level), never on JSON syntax.  A terminal sequence becomes one
    space, a word boundary, as on screen.
    """

    __slots__ = ("region_starts", "regions", "text")

    def __init__(self) -> None:
        self.text = bytearray()
        self.regions: list[_Region] = []
        self.region_starts: list[int] = []

    def add_line(self, line: bytes, offset: int) -> None:
        """Add a JSON line (already validated) that starts at ``offset`` in the block."""
        if self.text:
            self.text += b"\n"  # in no region: nothing maps across it
        self._json(_Source(line, _Map.identity(offset, len(line))), 0)

    def add_text_line(self, line: bytes, offset: int) -> None:
        """Add a line that is not JSON: plain text, or one line of an indented JSON document.

        Its quotes need not pair, so there are no strings to decode: only the
        escapes that hide a character (`_HIDING_RUN`), each with the run of
        backslashes before it, so that ``\\\\/`` two levels down is ``/`` too.
        Each maps to its whole run, and a string that loses whole runs of
        backslashes with their escape is still a valid string at every level.
        """
        if self.text:
            self.text += b"\n"
        out = bytearray()
        where = _Map()
        pos = 0
        for run in _HIDING_RUN.finditer(line):
            if run.start() > pos:
                where.add(len(out), offset + pos, offset + run.start(), exact=True)
                out += line[pos : run.start()]
            where.add(len(out), offset + run.start(), offset + run.end(), exact=False)
            out.append(int(run[1], 16) if run[1] else 0x2F)
            pos = run.end()
        if len(line) > pos:
            where.add(len(out), offset + pos, offset + len(line), exact=True)
            out += line[pos:]
        data = bytes(out)
        self._region(data, _Source(data, where), 0, len(data))

    def to_raw(self, span: _Span) -> _Span | None:
        """The raw bytes behind a span of decoded text, or None if it would touch JSON syntax."""
        start, end = span.start, span.end
        for stop in (b'"', b"\n"):  # never past a string's end, never over a line
            cut = self.text.find(stop, start, end)
            end = end if cut < 0 else cut
        i = bisect.bisect_right(self.region_starts, start) - 1
        if end <= start or i < 0:
            return None
        region = self.regions[i]
        if end > region.end or not region.in_string(start, end):
            return None
        raw_start, raw_end = region.raw(start, end)
        return _Span(raw_start, raw_end, span.rank, span.counted)

    def _region(
        self, data: bytes, source: _Source, a: int, b: int, *, plain: bool = False, syntax: bool = False
    ) -> None:
        start = len(self.text)
        self.text += data
        self.regions.append(_Region(start, len(self.text), source, a, plain, b, syntax))
        self.region_starts.append(start)

    def _json(self, doc: _Source, depth: int) -> None:
        """A JSON document (already validated): syntax as is, each string decoded."""
        data = doc.data
        pos = scan = 0  # data[pos:] is not in the view yet; up to an escaped string it is copied as is
        while (found := _UP_TO_ESCAPED_STRING.match(data, scan)) is not None:
            literal = found.group(1)
            a, b = found.start(1) + 1, found.end(1) - 1
            if a > pos:
                self._region(data[pos:a], doc, pos, a, syntax=True)
            # The same decoding as json.loads on bytes, which accepted the document.
            decoded = _scanstring(literal.decode("utf-8", "surrogatepass"), 1)[0].encode("utf-8", "surrogatepass")
            self._text(_Source(decoded, parent=doc, a=a, b=b, decode=True), depth + 1)
            pos, scan = b, b + 1  # the closing quote is copied with what follows it
        if len(data) > pos:
            self._region(data[pos:], doc, pos, len(data), syntax=True)

    def _text(self, text: _Source, depth: int) -> None:
        """A decoded string: a JSON document again, lines of JSON (``cat x.jsonl``), or text."""
        data = text.data
        if depth < MAX_NESTING and _is_document(data):
            self._json(text, depth)
            return
        pos = 0
        if depth < MAX_NESTING:
            for line in _DOCUMENT_LINE.finditer(data):
                if _is_json(line[0]):
                    self._plain(text, pos, line.start())
                    self._json(_Source(line[0], parent=text, a=line.start(), b=line.end()), depth)
                    pos = line.end()
        self._plain(text, pos, len(data))

    def _plain(self, text: _Source, a: int, b: int) -> None:
        if b <= a:
            return
        part = text.data[a:b]
        if b"\x1b" in part:
            self._region(_ANSI.sub(b" ", part), text, a, b, plain=True)
        else:
            self._region(part, text, a, b)


_scanstring: Final = cast(Callable[[str, int], tuple[str, int]], vars(json.decoder)["scanstring"])
"""The C string decoder behind `json.loads` (not in typeshed), without its per-call set-up."""

# From outside a string in a JSON document: syntax and strings without an
# escape, skipped in C (possessive: no backtracking), up to the next string
# with an escape.  Anchored with `match`, so it never starts inside a string.
_UP_TO_ESCAPED_STRING = re.compile(rb'(?:[^"]++|"[^"\\\n]*+")*+("[^"\\\n]*+(?:\\.[^"\\\n]*+)++")')
_DOCUMENT_LINE = re.compile(rb"(?m)^[ \t]*[\[{][^\n]*")


def _decode_string(doc: bytes, where: _Map, a: int, b: int) -> tuple[bytes, _Map]:
    """Decode the JSON string ``doc[a:b]`` (valid), keeping where each byte came from.

    A surrogate pair is one character; a lone surrogate is kept as it is
    (``surrogatepass``): it is no letter, and nothing in it is a secret.
    """
    out = bytearray()
    out_map = _Map()
    pos = a
    while (i := doc.find(b"\\", pos, b)) >= 0:
        if i > pos:
            out_map.extend(where, pos, i, len(out))
            out += doc[pos:i]
        if doc[i + 1] == 0x75:  # \uXXXX
            code, end = int(doc[i + 2 : i + 6], 16), i + 6
            if 0xD800 <= code < 0xDC00 and doc[end : end + 2] == b"\\u":
                low = int(doc[end + 2 : end + 6], 16)
                if 0xDC00 <= low < 0xE000:
                    code, end = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), end + 6
            char = chr(code).encode("utf-8", "surrogatepass")
        else:
            char, end = _SIMPLE_ESCAPES[doc[i + 1]], i + 2
        out_map.add(len(out), where.lo(i), where.hi(end - 1), exact=False)
        out += char
        pos = end
    if b > pos:
        out_map.extend(where, pos, b, len(out))
        out += doc[pos:b]
    return bytes(out), out_map


_VALUE_ESCAPE = re.compile(rb"\\u([0-9a-fA-F]{4})|\\/")


def _unescaped(value: bytes) -> bytes:
    """A matched value with the escapes the value classes walk through (`_ESC`) decoded."""
    if b"\\" not in value:
        return value
    return _VALUE_ESCAPE.sub(lambda m: chr(int(m[1], 16)).encode("utf-8", "surrogatepass") if m[1] else b"/", value)


def _is_document(text: bytes) -> bool:
    """A JSON object or array: the strings in it are decoded one level further."""
    return text.lstrip()[:1] in (b"{", b"[") and _is_json(text)


def _is_json(line: bytes) -> bool:
    if not line.lstrip().startswith((b"{", b"[")):
        return False
    try:
        json.loads(line)
    except (ValueError, RecursionError):  # nested past json.loads' limit: redacted as text (every rule runs)
        return False
    return True


def _check_json(block: bytes, result: bytes, touched: set[int], first_line: int) -> None:
    """Refuse output that would turn a valid JSON line into an invalid one.

    Markers never contain a newline and spans never cross one, so line N of
    the output is the redacted line N of the input.
    """
    new_lines = result.split(b"\n")
    for start in sorted(touched):
        index = block.count(b"\n", 0, start)
        old = block[start : _line_end(block, start)]
        if not _is_json(old):
            continue  # was not JSON: redacted as text
        try:
            json.loads(new_lines[index])
        except ValueError as exc:
            raise RedactionError(f"line {first_line + index}: redaction would break its JSON; not redacted") from exc


def _scrubber(config: RedactionConfig) -> Callable[[bytes], bytes]:
    """Build the optional home/user replacement, applied outside markers only."""
    if not config.scrub_home:
        return lambda text: text
    subs: list[tuple[re.Pattern[bytes], bytes]] = []
    home = (config.home or "").rstrip("/\\")
    if len(home) > 1:
        forms = {home.encode(), json.dumps(home)[1:-1].encode()}
        for form in sorted(forms, key=len, reverse=True):
            subs.append((re.compile(rb"(?<![\w.-])" + re.escape(form) + rb"(?![\w.-])"), b"~"))
    user = config.user or ""
    if user:
        word = rb"(?<![A-Za-z0-9_])" + re.escape(user.encode()) + rb"(?![A-Za-z0-9_])"
        subs.append((re.compile(word), b"<user>"))
    if not subs:
        raise RedactionError("scrub_home is on but neither home nor user is set")

    def scrub(text: bytes) -> bytes:
        for pattern, replacement in subs:
            text = pattern.sub(replacement, text)
        return text

    return scrub


def from_settings(settings: RedactionSettingsLike, *, home: str | None = None, user: str | None = None) -> Redactor:
    """The daemon's (and `tracekeeper redact`'s) redactor, from the `[redaction]` config table.

    Home and user default to this process's, so the daemon and the CLI scrub alike.
    """
    if settings.scrub_home:
        import getpass
        from pathlib import Path

        home = home or str(Path.home())
        user = user or getpass.getuser()
    rules = tuple(
        Rule(id=rule_id, pattern=pattern, keywords=keywords, entropy=entropy)
        for rule_id, pattern, keywords, entropy in settings.rules
    )
    return Redactor(
        RedactionConfig(
            extra_rules=rules,
            allow=settings.allow,
            scrub_home=settings.scrub_home,
            home=home,
            user=user,
        )
    )


class RedactionSettingsLike(Protocol):
    @property
    def allow(self) -> tuple[str, ...]: ...
    @property
    def rules(self) -> tuple[tuple[str, str, tuple[str, ...], float | None], ...]: ...
    @property
    def scrub_home(self) -> bool: ...
