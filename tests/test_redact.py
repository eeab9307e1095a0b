"""Redaction: every planted secret goes, nothing else changes, JSONL stays valid, failures fail closed."""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import pytest

from tracekeeperd import redact
from tracekeeperd.redact import (
    BUILTIN_RULES,
    Engine,
    RedactionConfig,
    RedactionError,
    Redactor,
    Report,
    Rule,
)

from .secretgen import KINDS, Corpus, corpus

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def planted() -> Corpus:
    return corpus()


@pytest.fixture(scope="module", params=["re2", "re"])
def redacted(request: pytest.FixtureRequest, planted: Corpus) -> tuple[list[bytes], Report]:
    """The corpus redacted once per engine: the built-in patterns must not depend on the engine."""
    engine: Engine = request.param
    out, report = Redactor(engine=engine).redact_bytes(planted.data())
    return out.splitlines(keepends=True), report


def _windows(secret: str, width: int = 16) -> set[str]:
    """Every 16-character slice: a partial leak (a secret cut short) must fail the test too."""
    return {secret[i : i + width] for i in range(max(1, len(secret) - width + 1))}


# -- the corpus ------------------------------------------------------------


def test_generator_covers_every_builtin_rule() -> None:
    assert set(KINDS) == {rule.id for rule in BUILTIN_RULES}


def test_every_planted_secret_is_removed(planted: Corpus, redacted: tuple[list[bytes], Report]) -> None:
    out = b"".join(redacted[0])
    survivors = {out[i : i + 16] for i in range(len(out) - 15)}
    leaks = [
        (p.kind, p.line)
        for p in planted.planted
        for needle in p.needles
        if any(window.encode() in survivors for window in _windows(needle))
    ]
    assert leaks == []


def test_every_kind_is_named_by_its_rule(planted: Corpus, redacted: tuple[list[bytes], Report]) -> None:
    report = redacted[1]
    by_line: dict[int, list[str]] = {}
    for finding in report.findings:
        by_line.setdefault(finding.line - 1, []).append(finding.rule)
    wrong = []
    for p in planted.planted:
        got = Counter(rule for n in range(p.line, p.line + p.nlines) for rule in by_line.get(n, []))
        if got != Counter({p.kind: p.count}):
            wrong.append((p.kind, p.line, dict(got)))
    assert wrong == []
    assert report.counts == Counter(p.kind for p in planted.planted for _ in range(p.count))


def test_output_is_valid_jsonl_line_by_line(planted: Corpus, redacted: tuple[list[bytes], Report]) -> None:
    out_lines = redacted[0]
    assert len(out_lines) == len(planted.lines)
    json_lines = 0
    for before, after in zip(planted.lines, out_lines, strict=True):
        try:
            json.loads(before)
        except ValueError:
            continue  # plain text stays plain text
        json.loads(after)
        json_lines += 1
    assert json_lines > 0.8 * len(planted.lines)


def test_innocent_lines_are_untouched(planted: Corpus, redacted: tuple[list[bytes], Report]) -> None:
    out_lines = redacted[0]
    false_positives = [i for i in planted.innocent if out_lines[i] != planted.lines[i]]
    print(f"\nfalse positives: {len(false_positives)} of {len(planted.innocent)} innocent lines")
    assert false_positives == []


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="no transcript fixtures")
def test_real_transcripts_have_no_false_positives() -> None:
    """The fixtures are published sessions checked for secrets: any finding there is a false positive."""
    redactor = Redactor()
    findings: dict[str, dict[str, int]] = {}
    files = [p for p in sorted(FIXTURES.rglob("*")) if p.suffix in {".jsonl", ".json"}]
    for path in files:
        data = path.read_bytes()
        out, report = redactor.redact_bytes(data)
        if report.counts:
            findings[str(path.relative_to(FIXTURES))] = report.counts
        else:
            assert out == data
    print(f"\nreal transcripts: {len(files)} files, false positives: {findings or 0}")
    assert findings == {}


def test_redaction_is_idempotent(redacted: tuple[list[bytes], Report]) -> None:
    once = b"".join(redacted[0])
    twice, report = Redactor(RedactionConfig()).redact_bytes(once)
    assert twice == once
    assert report.counts == {}


def test_report_never_holds_a_secret(planted: Corpus, redacted: tuple[list[bytes], Report]) -> None:
    report = redacted[1]
    text = repr(report)
    assert not [p.kind for p in planted.planted if p.secret[:16] in text]
    assert report.lines == len(planted.lines)
    assert report.bytes_in == len(planted.data())
    assert report.bytes_out == len(b"".join(redacted[0]))


# -- streaming -------------------------------------------------------------


class Trickle(io.BytesIO):
    """Returns at most ``step`` bytes per read, so lines and keys straddle read boundaries."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self.step = step

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self.step if size is None or size < 0 else min(size, self.step))


@pytest.mark.parametrize("step", [1 << 20, 4096, 997])
def test_stream_equals_bytes(planted: Corpus, step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    redactor = Redactor()
    data = planted.data()
    expected, expected_report = redactor.redact_bytes(data)
    monkeypatch.setattr(redact, "BLOCK_BYTES", step)
    dst = io.BytesIO()
    report = redactor.redact_stream(Trickle(data, step), dst)
    assert dst.getvalue() == expected
    assert report == expected_report


def test_redact_line_matches_the_stream_on_single_lines(planted: Corpus) -> None:
    redactor = Redactor()
    report = Report()
    lines = [line for line in planted.lines if line.startswith(b"{")]
    out = b"".join(redactor.redact_line(line, n, report) for n, line in enumerate(lines, 1))
    expected, expected_report = redactor.redact_bytes(b"".join(lines))
    assert out == expected
    assert report == expected_report


# -- JSON escapes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "gone"),
    [
        # value inside escaped quotes, followed by an escaped newline
        (rb'{"o":"{\"password\": \"Xk9mP2vL8qR4zzA1\"}\nnext"}', b"Xk9mP2vL8qR4zzA1"),
        # .NET-style \u002B and PHP-style \/ inside a base64 secret
        (
            rb'{"o":"aws_secret_access_key=abcdEFGHijklMNOPqrst\u002Buvwx\/yz0123456789ABCDEFGH\nx"}',
            b"yz0123456789ABCDEFGH",
        ),
        # JSON inside JSON inside JSON: \\\" around the value
        (rb'{"o":"{\\\"api_key\\\": \\\"q8Zr2Lw0Xv5Nc7Tb1Yh4Pk9M\\\"}"}', b"q8Zr2Lw0Xv5Nc7Tb1Yh4Pk9M"),
        # a private key with \r\n escapes, ending the string
        (
            rb'{"o":"-----BEGIN EC PRIVATE KEY-----\r\nMHcCAQEEIBk7aWZ0c2lkZWZha2VrZXlmb3J0ZXN0cw\r\n'
            rb'-----END EC PRIVATE KEY-----"}',
            b"MHcCAQEEIBk7aWZ0c2lkZWZha2VrZXlmb3J0ZXN0cw",
        ),
        # truncated key: no END line before the string closes
        (rb'{"o":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nMIIEvQIBAD"}', b"MIIEvQIBADANBgkq"),
    ],
)
def test_secrets_inside_json_escapes(line: bytes, gone: bytes) -> None:
    out = Redactor().redact_line(line, 1, Report())
    assert gone not in out
    json.loads(out)


@pytest.mark.parametrize("engine", ["re2", "re"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_truncated_key_is_redacted_whole_at_every_json_depth(engine: redact.Engine, depth: int) -> None:
    """A key cut before its END line (`head -5 id_rsa`, an agent's truncated tool output) held
    in JSON inside JSON (Codex's `function_call_output` is a JSON document in a string): its
    line breaks are written `\\\\n` there (two backslashes), and every body line must still be replaced."""
    body = [
        "MIIEpAIBAAKCAQEA1x2y3z4w5v6u7t8s9r0q1p2o3n4m5l6k7j8i9h0g1f2e3d4c5b6a7Z8Y9X0W1V2U3T4S5R6",
        "Q7P8O9N0M1L2K3J4I5H6G7F8E9D0C1B2A3z4y5x6w7v6u5t4s3r2q1p0o9n8m7l6k5j4i3h2g1f0e9d8c7b6a5Z4Y3",
    ]
    value: object = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(body) + "\n"
    for _ in range(depth - 1):
        value = json.dumps({"output": value, "metadata": {"exit_code": 0}})
    line = json.dumps({"type": "function_call_output", "output": value}).encode() + b"\n"
    out, report = Redactor(engine=engine).redact_bytes(line)
    assert not any(part[:24].encode() in out for part in body), out
    assert report.counts == {"private-key": 1}
    json.loads(out)


def test_a_line_nested_deeper_than_json_loads_goes_is_redacted_as_text() -> None:
    """A record nested past json.loads' recursion limit (a tool call's arguments built by a
    prompt-injected agent): redacted as text, which runs every rule, rather than failing the
    redaction of the whole session, and with it every later upload of it, for good."""
    token = "hf_Zq8Rw3Lx0Vb5Nc7Tp1Yk4Mj9Hg2Fd6Sa"
    line = ('{"input":' + "[" * 3000 + f'"{token}"' + "]" * 3000 + "}\n").encode()
    out, report = Redactor().redact_bytes(line + b'{"next": "line"}\n')
    assert token.encode() not in out and report.counts == {"hf-token": 1}
    assert out.endswith(b'{"next": "line"}\n')


def test_mutated_json_lines_stay_valid(planted: Corpus) -> None:
    """Quotes, backslashes, control and non-ASCII characters dropped next to secrets never break a line."""
    rng = random.Random(5)
    noise = ['"', "\\", "\n", "\t", "\u00e9", "\u2028", "+", "/", " ", "\\u", "@", ":", "=", "\r\n"]

    def mutate(value: object) -> object:
        if isinstance(value, str):
            chars = list(value)
            for _ in range(rng.randint(0, 6)):
                chars.insert(rng.randint(0, len(chars)), rng.choice(noise))
            return "".join(chars)
        if isinstance(value, dict):
            return {k: mutate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mutate(v) for v in value]
        return value

    redactor = Redactor()
    json_lines = [line for line in planted.lines if line.startswith(b"{")]
    for _ in range(400):
        record = mutate(json.loads(rng.choice(json_lines)))
        line = json.dumps(record, ensure_ascii=rng.random() < 0.5).encode() + b"\n"
        json.loads(redactor.redact_line(line, 1, Report()))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (b"postgres://app:p4ss@w0rd!@db:5432/app", b"postgres://app:[REDACTED:url-password]@db:5432/app"),
        (b"amqp://svc:Zq9?x#y@rabbit/vhost", b"amqp://svc:[REDACTED:url-password]@rabbit/vhost"),
        (b"redis://:s3cr3t-Pw@cache:6379/0", b"redis://:[REDACTED:url-password]@cache:6379/0"),
        (b"https://user:${PASSWORD}@host/x", b"https://user:${PASSWORD}@host/x"),
        (b"https://registry.npmjs.org:443/@acme%2fui", b"https://registry.npmjs.org:443/@acme%2fui"),
    ],
)
def test_url_passwords(url: bytes, expected: bytes) -> None:
    assert Redactor().redact_line(url, 1, Report()) == expected


def test_plain_text_key_over_crlf_lines_keeps_line_endings() -> None:
    data = (
        b"-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-128-CBC,0A1B2C\r\n\r\n"
        b"MIIEowIBAAKCAQEAfakefakefake+/=\r\nQ2hhbmdlIG1lIHBsZWFzZQ\r\n-----END RSA PRIVATE KEY-----\r\n"
        b"after\r\n"
    )
    out, report = Redactor().redact_bytes(data)
    assert out.count(b"\r\n") == data.count(b"\r\n")
    assert b"fakefake" not in out and b"Q2hhbmdl" not in out and b"ENCRYPTED" not in out
    assert out.endswith(b"[REDACTED:private-key]\r\nafter\r\n")
    assert report.counts == {"private-key": 1}


def test_a_match_starting_inside_an_escape_takes_the_whole_escape() -> None:
    rule = Rule("accented", r"00e9zz[0-9]{6}", ("zz",))
    out = Redactor(RedactionConfig(extra_rules=(rule,))).redact_line(rb'{"a":"caf\u00e9zz123456!"}', 1, Report())
    assert out == b'{"a":"caf[REDACTED:accented]!"}'
    json.loads(out)


def test_matches_outside_json_strings_are_left_alone() -> None:
    """A bare number cannot be a secret, and replacing it would break the line."""
    rule = Rule("card", r"[0-9]{16}", ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
    redactor = Redactor(RedactionConfig(extra_rules=(rule,)))
    line = b'{"n":4111111111111111,"s":"card 4111111111111111"}\n'
    out = redactor.redact_line(line, 1, Report())
    assert out == b'{"n":4111111111111111,"s":"card [REDACTED:card]"}\n'
    text = b"plain 4111111111111111\n"
    assert redactor.redact_line(text, 1, Report()) == b"plain [REDACTED:card]\n"


def test_a_user_pattern_cannot_eat_the_closing_quote() -> None:
    rule = Rule("greedy", r"tok_[a-z]+.*", ("tok_",))
    out = Redactor(RedactionConfig(extra_rules=(rule,))).redact_line(b'{"a":"tok_abc","b":"x"}', 1, Report())
    assert out == b'{"a":"[REDACTED:greedy]","b":"x"}'


# -- configuration -----------------------------------------------------------


def test_allow_list_keeps_exact_strings() -> None:
    data = b"GITHUB_TOKEN=ghp_" + b"A1b2C3d4" * 4 + b"Zz9y\nOTHER=ghp_" + b"Q7w8E9r0" * 4 + b"Kk1j\n"
    allowed = "ghp_" + "A1b2C3d4" * 4 + "Zz9y"
    out, report = Redactor(RedactionConfig(allow=(allowed,))).redact_bytes(data)
    assert allowed.encode() in out
    assert b"Q7w8E9r0" not in out
    assert report.counts == {"github-pat": 1}


def test_user_rule_redacts_and_outranks_generic_rules() -> None:
    rule = Rule("acme-key", r"\bacme_[a-z0-9]{24}\b", ("acme_",))
    redactor = Redactor(RedactionConfig(extra_rules=(rule,)))
    out, report = redactor.redact_bytes(
        b"ACME_TOKEN=acme_0123456789abcdefghijklmn\nsee acme_zyxwvutsrqponmlkjihg0123\n"
    )
    assert out == b"ACME_TOKEN=[REDACTED:acme-key]\nsee [REDACTED:acme-key]\n"
    assert report.counts == {"acme-key": 2}
    assert "acme-key" in redactor.rule_ids


def test_user_rule_with_entropy_and_group() -> None:
    rule = Rule("ticket-secret", r"ticket:([A-Za-z0-9]{12,})", ("ticket:",), entropy=3.0, secret_group=1)
    redactor = Redactor(RedactionConfig(extra_rules=(rule,)))
    out, _ = redactor.redact_bytes(b"ticket:aaaaaaaaaaaaaaa ticket:Q7w8E9r0T1y2U3\n")
    assert out == b"ticket:aaaaaaaaaaaaaaa ticket:[REDACTED:ticket-secret]\n"


@pytest.mark.parametrize("engine", ["re2", "re"])
@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule("broken", "acme_(unclosed", ("acme_",)), "invalid pattern 'acme_(unclosed'"),
        (Rule("Bad_Id", "acme_[a-z]+", ("acme_",)), "kebab-case"),
        (Rule("no-keyword", "acme_[a-z]+", ()), "keyword"),
        (Rule("bad-group", "acme_[a-z]+", ("acme_",), secret_group=2), "secret_group 2"),
        (Rule("github-pat", "acme_[a-z]+", ("acme_",)), "used twice"),
    ],
)
def test_bad_user_rules_are_refused_at_construction(engine: Engine, rule: Rule, message: str) -> None:
    with pytest.raises(RedactionError) as caught:
        Redactor(RedactionConfig(extra_rules=(rule,)), engine=engine)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_lookbehind_is_refused_by_re2_with_the_pattern_named() -> None:
    with pytest.raises(RedactionError, match=r"invalid pattern '\(\?<=key=\)\[a-z\]\+'"):
        Redactor(RedactionConfig(extra_rules=(Rule("lb", "(?<=key=)[a-z]+", ("key=",)),)))


def test_home_and_user_are_scrubbed_only_when_enabled() -> None:
    line = b'{"cwd":"/home/alice/src/app","dir":"-home-alice-src-app","msg":"alice@laptop: /home/alicebob"}\n'
    plain = Redactor().redact_line(line, 1, Report())
    assert plain == line
    config = RedactionConfig(scrub_home=True, home="/home/alice/", user="alice")
    scrubbed = Redactor(config).redact_line(line, 1, Report())
    assert scrubbed == (b'{"cwd":"~/src/app","dir":"-home-<user>-src-app","msg":"<user>@laptop: /home/alicebob"}\n')
    json.loads(scrubbed)


def test_scrubbing_leaves_markers_alone() -> None:
    config = RedactionConfig(scrub_home=True, home="/home/generic", user="generic")
    out = Redactor(config).redact_line(b"DB_PASSWORD=Xk9#mP2$vL8@qR4!zz generic\n", 1, Report())
    assert out == b"DB_PASSWORD=[REDACTED:generic-password] <user>\n"


def test_scrub_home_without_home_or_user_is_a_config_error() -> None:
    with pytest.raises(RedactionError, match="neither home nor user"):
        Redactor(RedactionConfig(scrub_home=True))


def test_the_marker_names_the_rule_and_nothing_of_the_secret() -> None:
    data = b"A=ghp_" + b"A1b2C3d4" * 4 + b"Zz9y B=ghp_" + b"A1b2C3d4" * 4 + b"Zz9y\n"
    plain, _ = Redactor().redact_bytes(data)
    assert plain == b"A=[REDACTED:github-pat] B=[REDACTED:github-pat]\n"


def test_ruleset_id_changes_with_the_rules() -> None:
    base = Redactor().ruleset_id
    assert base == Redactor().ruleset_id
    extra = RedactionConfig(extra_rules=(Rule("acme-key", "acme_[a-z]{8}", ("acme_",)),))
    assert Redactor(extra).ruleset_id != base


# -- fail closed -------------------------------------------------------------


class BrokenSource(io.BytesIO):
    """Fails after handing out ``good`` bytes, like a file on a disk that went away."""

    def __init__(self, data: bytes, good: int) -> None:
        super().__init__(data)
        self.good = good

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.good:
            raise OSError(5, "Input/output error")
        limit = self.good - self.tell()
        return super().read(limit if size is None or size < 0 else min(size, limit))


def test_a_failing_source_raises_and_returns_no_report(planted: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract: no Report means not redacted; what reached dst is redacted but incomplete."""
    monkeypatch.setattr(redact, "BLOCK_BYTES", 4096)
    data = planted.data()
    full, _ = Redactor().redact_bytes(data)
    dst = io.BytesIO()
    with pytest.raises(RedactionError, match=r"OSError.*Input/output error"):
        Redactor().redact_stream(BrokenSource(data, len(data) // 2), dst)
    partial = dst.getvalue()
    assert 0 < len(partial) < len(full)
    assert full.startswith(partial)


def test_a_failing_destination_raises() -> None:
    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(RedactionError, match="No space left"):
        Redactor().redact_stream(io.BytesIO(b"line\n"), Full())


def test_missing_re2_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "re2", None)
    with pytest.raises(RedactionError, match="google-re2 is not installed"):
        Redactor()


def test_a_line_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(redact, "BLOCK_BYTES", 256)
    data = b"short\n" + b"x" * 5000 + b"\nshort\n"
    with pytest.raises(RedactionError, match="line 2 is longer than 1000 bytes"):
        Redactor().redact_stream(io.BytesIO(data), io.BytesIO())
    with pytest.raises(RedactionError, match="line 2 is longer than 1000 bytes"):
        Redactor().redact_bytes(data)


def test_output_that_would_break_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last guard: even if span clipping had a bug, an invalid line is never written."""
    monkeypatch.setattr(redact, "_json_safe", lambda block, start, end: (start, end))
    monkeypatch.setattr(redact, "_inside_json_strings", lambda block, spans: spans)
    rule = Rule("greedy", r'tok_[a-z]+"', ("tok_",))
    redactor = Redactor(RedactionConfig(extra_rules=(rule,)))
    with pytest.raises(RedactionError, match="line 1: redaction would break its JSON"):
        redactor.redact_stream(io.BytesIO(b'{"a":"tok_abc","b":1}\n'), io.BytesIO())


def test_an_unexpected_error_mid_stream_becomes_redaction_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(value: bytes) -> float:
        raise MemoryError("simulated")

    monkeypatch.setattr(redact, "shannon_entropy", explode)
    src: BinaryIO = io.BytesIO(b"ok\nGITHUB_TOKEN=ghp_" + b"A1b2C3d4" * 4 + b"Zz9y\n")
    with pytest.raises(RedactionError, match="MemoryError: simulated"):
        Redactor().redact_stream(src, io.BytesIO())


# -- what a reader of the decoded strings sees ---------------------------------
#
# A token printed on its own line in tool output sits right after the two bytes
# `\n` of its JSON string; a coloured one right after `\u001b[32m`.  The byte
# before it is a letter, so a word-boundary rule used to skip it.

HF = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"
GHP = "ghp_" + "A1b2C3d4" * 4 + "Zz9y"
ANT = "sk-ant-api03-" + "Xy7_Kq2-Lm9Np4Rs6Tu8Vw0Za1Bc3De5Fg7Hi9Jk" + "AA"
AKIA = "AKIA" + "Q3ZJ7WMXK2L5T6PR"
NPM = "npm_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
AZURE_AD = "abc" + "7Q~" + "Xk9mP2vL8qR4zzA1Bc3De5Fg7Hi9Jk1Lm"

TOKENS = {"hf-token": HF, "github-pat": GHP, "anthropic-api-key": ANT, "aws-access-key-id": AKIA, "npm-token": NPM}


def _codex_output(output: str) -> bytes:
    """A Codex rollout line for a tool's output, as codex-rs writes it (compact serde_json)."""
    payload = {"type": "function_call_output", "call_id": "call_Zq8Lw0Xv5Nc7Tb1Yh4Pk9M2a", "output": output}
    record = {"timestamp": "2026-11-25T09:00:01.000Z", "type": "response_item", "payload": payload}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _nested(text: str, levels: int) -> str:
    """``text`` as the output of a tool whose output is JSON, ``levels`` deep (double encoding)."""
    for _ in range(levels):
        text = json.dumps({"output": text, "metadata": {"exit_code": 0}})
    return text


def test_the_codex_repro_a_token_on_its_own_line_in_tool_output() -> None:
    line = _codex_output(f"token\n{HF}\n")
    out, report = Redactor().redact_bytes(line)
    assert HF[3:].encode() not in out
    assert report.counts == {"hf-token": 1}
    assert json.loads(out)["payload"]["output"] == "token\n[REDACTED:hf-token]\n"


CONTEXTS = {
    "tab": "\t{}",
    "carriage return": "progress 100%\r{}",
    "digit": "1{}",
    "line number": "   12\t{}",
    "ansi colour": "\x1b[32m{}\x1b[0m",
    "ansi bold": "\x1b[1mtoken:\x1b[0m \x1b[1m{}\x1b[22m",
    "ansi 256 colours": "\x1b[38;5;208m{}\x1b[39m",
    "form feed": "\f{}",
    "backspace": "x\b{}",
    "escaped control": "\x01{}",
    "newline then digit": "token\n7{}",
}


@pytest.mark.parametrize("kind", sorted(TOKENS))
@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_a_token_after_a_json_escape_or_ansi_code_is_removed(kind: str, context: str) -> None:
    token = TOKENS[kind]
    line = _codex_output(CONTEXTS[context].format(token))
    out, report = Redactor().redact_bytes(line)
    assert token[4:].encode() not in out
    assert report.counts == {kind: 1}
    json.loads(out)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_a_token_inside_double_encoded_json_is_removed(levels: int) -> None:
    line = _codex_output(_nested(f"token\n{HF}\n\x1b[32m{GHP}\x1b[0m", levels))
    assert b"\\\\n" + HF[:6].encode() in line or levels == 0
    out, report = Redactor().redact_bytes(line)
    assert HF[3:].encode() not in out and GHP[4:].encode() not in out
    assert report.counts == {"hf-token": 1, "github-pat": 1}
    text = json.loads(out)["payload"]["output"]
    for _ in range(levels):
        text = json.loads(text)["output"]  # every level is still valid JSON
    assert text == "token\n[REDACTED:hf-token]\n\x1b[32m[REDACTED:github-pat]\x1b[0m"


def _escape_chars(line: bytes, chars: str) -> bytes:
    """Write some characters of every string as \\uXXXX, as some JSON writers do."""
    for ch in chars:
        line = line.replace(ch.encode(), f"\\u{ord(ch):04x}".encode())
    return line


@pytest.mark.parametrize("escaped", ["h", "f_", "G", "k", "/"])
def test_a_token_with_unicode_escaped_letters_is_removed(escaped: str) -> None:
    text = f"token: {HF}\nsee https://hooks.slack.com/services/T0ABCDEF12/B0ABCDEF12/Xk9mP2vL8qR4zzA1Bc3De5Fg\n"
    line = _escape_chars(_codex_output(text), escaped)
    out, report = Redactor().redact_bytes(line)
    assert json.loads(out)["payload"]["output"] == "token: [REDACTED:hf-token]\nsee [REDACTED:slack-webhook-url]\n"
    assert report.counts == {"hf-token": 1, "slack-webhook-url": 1}


def test_a_nested_unicode_escaped_token_is_removed() -> None:
    line = _codex_output(_nested(f"{HF}", 2).replace("hf_", "\\u0068f_"))
    out, report = Redactor().redact_bytes(line)
    assert report.counts == {"hf-token": 1}
    assert HF[3:].encode() not in out
    level1 = json.loads(json.loads(out)["payload"]["output"])
    assert json.loads(level1["output"])["output"] == "[REDACTED:hf-token]"


def test_keys_are_redacted_like_values() -> None:
    line = json.dumps({"env": {f"token\n{HF}": 1, "x": {f"\x1b[1m{NPM}": "y"}}}).encode() + b"\n"
    out, report = Redactor().redact_bytes(line)
    assert report.counts == {"hf-token": 1, "npm-token": 1}
    assert json.loads(out) == {"env": {"token\n[REDACTED:hf-token]": 1, "x": {"\x1b[1m[REDACTED:npm-token]": "y"}}}


def test_context_rules_see_through_escapes() -> None:
    """An Azure client secret and an option on their own lines; the option after an escaped tab too."""
    line = _codex_output(f"id\n{AZURE_AD}\n$ mysql\t--password=Xk9mP2vL8qR4zzA1 prod\n")
    out, report = Redactor().redact_bytes(line)
    assert json.loads(out)["payload"]["output"] == (
        "id\n[REDACTED:azure-ad-client-secret]\n$ mysql\t--password=[REDACTED:cli-password] prod\n"
    )
    assert report.counts == {"azure-ad-client-secret": 1, "cli-password": 1}


@pytest.mark.parametrize(
    "text",
    [
        f"x{HF}",  # glued to a word: not a token a reader would pick out
        f"deadbeef7{HF}",  # a digit run that is itself glued to a word
        f"\\u0061{HF}",  # an escaped letter is a letter
        f"v1\x1b[0mx{GHP}",
        "\x1b[32mfrom huggingface_hub import hf_hub_download\x1b[0m\n\t1\thf_transfer_enabled = True",
    ],
)
def test_word_glued_tokens_are_still_left_alone(text: str) -> None:
    line = _codex_output(text)
    if text.startswith("\\u0061"):
        line = line.replace(b"\\\\u0061", b"\\u0061")
    out, report = Redactor().redact_bytes(line)
    assert report.counts == {}
    assert out == line


def test_plain_text_lines_get_escape_aware_boundaries() -> None:
    data = f"\x1b[32m{HF}\x1b[0m\nexport X=1\\n{GHP}\n2{NPM}\n".encode()
    out, report = Redactor().redact_bytes(data)
    assert out == b"\x1b[32m[REDACTED:hf-token]\x1b[0m\nexport X=1\\n[REDACTED:github-pat]\n2[REDACTED:npm-token]\n"
    assert report.counts == {"hf-token": 1, "github-pat": 1, "npm-token": 1}


@pytest.mark.parametrize("engine", ["re2", "re"])
def test_escape_aware_redaction_is_the_same_on_both_engines(engine: Engine) -> None:
    line = _escape_chars(_codex_output(_nested(f"token\n{HF}\n\t{AKIA}\n", 2)), "h")
    out, report = Redactor(engine=engine).redact_bytes(line)
    assert report.counts == {"hf-token": 1, "aws-access-key-id": 1}
    assert out == Redactor(engine="re2").redact_bytes(line)[0]


def test_an_escaped_secret_gets_the_same_marker_as_the_plain_one() -> None:
    """Equal secrets get equal markers however they were escaped."""
    plain = _codex_output(f"a {HF}")
    escaped = _escape_chars(_codex_output(f"a {HF}"), "h")
    redactor = Redactor()
    assert (
        redactor.redact_bytes(plain)[0].split(b"[REDACTED:")[1]
        == redactor.redact_bytes(escaped)[0].split(b"[REDACTED:")[1]
    )


def test_ruleset_id_names_the_escape_aware_algorithm() -> None:
    """The same rules redacted by the older algorithm must not claim the same ruleset in a note."""
    rules_only = hashlib.sha256()
    for rule in BUILTIN_RULES:
        rules_only.update(f"{rule.id}\0{rule.pattern}\0{rule.entropy}\0".encode())
    assert Redactor().ruleset_id != rules_only.hexdigest()[:12]


def test_a_line_with_a_raw_lone_surrogate_is_still_decoded() -> None:
    """json.loads accepts a lone surrogate written as raw bytes (surrogatepass); decoding must too."""
    text = json.dumps({"o": f"\ud800 token\nx \u0068f_{HF[3:]}"}, ensure_ascii=False)
    line = text.replace("\u0068f_", "\\u0068f_").encode("utf-8", "surrogatepass") + b"\n"
    out, report = Redactor().redact_bytes(line)
    assert report.counts == {"hf-token": 1}
    assert out == b'{"o": "\xed\xa0\x80 token\\nx [REDACTED:hf-token]"}\n'


def test_escaped_letters_in_a_line_that_is_not_json_are_seen_through() -> None:
    """A pasted log line, and the lines of an indented JSON document (Gemini's legacy ``.json``).

    Gemini CLI wrote a legacy chat file as one indented document (google-gemini/gemini-cli at
    9a91371, packages/core/src/services/chatRecordingService.ts, writeConversation:
    ``JSON.stringify(conversation, null, 2)``), so no line of it is a JSON document; a tool's PHP
    or .NET output in it still hides letters and slashes one or two levels down.
    """
    php = '{"dsn":"postgres://app:Xk9mP2vL8qR4zzA1@db.internal/app","token":"' + HF + '"}'
    php = php.replace("/", "\\/").replace("hf_", "\\u0068f_")
    document = json.dumps({"messages": [{"content": f"out: {php}"}]}, indent=2)
    pasted = f"log: {HF[:10]}\\u{ord(HF[10]):04x}{HF[11:]} https:\\/\\/app:Xk9mP2vL8qR4zzA1@db.internal\n"
    out, report = Redactor().redact_bytes(document.encode() + b"\n" + pasted.encode())
    for secret in (HF[3:], HF[11:], "Xk9mP2vL8qR4zzA1"):
        assert secret.encode() not in out
    assert report.counts == {"hf-token": 2, "url-password": 2}
    first, second = out.split(b"\n}\n")
    content = json.loads(first + b"\n}")["messages"][0]["content"]
    assert json.loads(content.removeprefix("out: ")) == {
        "dsn": "postgres://app:[REDACTED:url-password]@db.internal/app",
        "token": "[REDACTED:hf-token]",
    }
    assert second == b"log: [REDACTED:hf-token] https:\\/\\/app:[REDACTED:url-password]@db.internal\n"
    assert Redactor().redact_bytes(out) == (out, Report(lines=report.lines, bytes_in=len(out), bytes_out=len(out)))


@pytest.mark.parametrize(
    "record",
    [
        {"args": "--password Xk9mP2vL8qR4zzA1 --host db"},  # the option opens a JSON string
        {"args": "'--password' Xk9mP2vL8qR4zzA1"},  # a quoted shell word
        {"input": json.dumps({"cmd": "--password=Xk9mP2vL8qR4zzA1"})},  # JSON inside JSON
    ],
)
def test_a_cli_password_at_the_start_of_a_string_is_redacted(record: dict[str, str]) -> None:
    """Found by the data-path review: an option that starts a JSON string (a tool's `args`) or a
    quoted word follows a quote, not white space, and `cli-password` let it through."""
    out, report = Redactor().redact_bytes(json.dumps(record).encode() + b"\n")
    assert b"Xk9mP2vL8qR4zzA1" not in out and report.counts == {"cli-password": 1}, out
