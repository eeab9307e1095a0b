"""`tracekeeper redact`: the real CLI in a subprocess, on generated secrets and a real transcript.

Why subprocesses: the promises are about what a user sees (stdout, stderr, exit status, files
left on disk), and the command must read the same config.toml the daemon reads. The expected
results come from `Redactor` in-process, so the CLI is checked against the library, and the
library itself against the ground truth of tests/secretgen.py (test_redact.py does that in depth).
"""

from __future__ import annotations

import json
import os
import pwd
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tracekeeperd.config import RedactionSettings
from tracekeeperd.redact import MAX_LINE_BYTES, RedactionConfig, Redactor, Rule, from_settings

from .harness import Env
from .secretgen import KINDS, MAKERS, SNIPPETS, Corpus, Planted, corpus

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "claude" / "projects" / "-home-marco-projects-spotter" / "55604662-cf2a-4331-851a-ec234028f8ca.jsonl"
FINDING = re.compile(r"^(?P<path>.+):(?P<line>[0-9]+):(?P<column>[0-9]+): (?P<rule>[a-z0-9-]+)$")
USER_RULE = {"id": "acme-deploy-key", "pattern": r"\bacme_dk_[0-9a-f]{32}", "keywords": ["acme_dk_"]}


@pytest.fixture(scope="module")
def planted() -> Corpus:
    return corpus(rounds=1)


@pytest.fixture
def transcript(env: Env, planted: Corpus) -> Path:
    path = env.root / "session.jsonl"
    path.write_bytes(planted.data())
    return path


WINDOW = 12


def _leaks(text: str, secrets: list[Planted]) -> list[tuple[str, int]]:
    """Planted secrets of which any 12-character slice (a prefix, say) occurs in ``text``."""
    grams = {text[i : i + WINDOW] for i in range(len(text) - WINDOW + 1)}
    return [
        (p.kind, p.line)
        for p in secrets
        for needle in p.needles
        if (
            needle in text
            if len(needle) < WINDOW
            else any(needle[i : i + WINDOW] in grams for i in range(len(needle) - WINDOW + 1))
        )
    ]


def _findings(stdout: str) -> list[tuple[str, int, int]]:
    """(rule, line, column) from the compiler-style lines of the human report."""
    return [(m["rule"], int(m["line"]), int(m["column"])) for m in map(FINDING.match, stdout.splitlines()) if m]


def _expected(data: bytes, redactor: Redactor | None = None) -> tuple[bytes, list[tuple[str, int, int]], Any]:
    out, report = (redactor or Redactor()).redact_bytes(data)
    return out, [(f.rule, f.line, f.column) for f in report.findings], report


def _one_error_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The CLI's error contract: exit 1, exactly one `Error:` line, no traceback, nothing on stdout."""
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr
    return proc.stderr


# -- the report ---------------------------------------------------------------------------------


def test_report_names_every_kind_on_its_line(env: Env, planted: Corpus, transcript: Path) -> None:
    proc = env.cli("redact", str(transcript))
    _, expected, report = _expected(planted.data())
    found = _findings(proc.stdout)
    assert found == expected
    # Against the ground truth too: each planted secret is reported by its own rule, on its lines.
    by_line: dict[int, Counter[str]] = {}
    for rule, line, _ in found:
        by_line.setdefault(line - 1, Counter())[rule] += 1
    wrong = [
        (p.kind, p.line)
        for p in planted.planted
        if sum((by_line.get(n, Counter()) for n in range(p.line, p.line + p.nlines)), Counter())
        != Counter({p.kind: p.count})
    ]
    assert wrong == []
    assert {rule for rule, _, _ in found} == set(KINDS)
    for kind, count in report.counts.items():
        assert re.search(rf"^  {re.escape(kind)} +{count}$", proc.stdout, re.M), kind
    assert f"{report.total} secrets would be redacted in {transcript}" in proc.stdout
    assert proc.stderr == ""


def test_no_secret_is_ever_printed(env: Env, planted: Corpus, transcript: Path) -> None:
    """Every output of every mode, the redacted copy included, checked for every planted secret."""
    out = env.root / "out.jsonl"
    texts = []
    for args in ([], ["--json"], ["-o", str(out)], ["-o", "-"], ["-o", "-", "--json"]):
        proc = env.cli("redact", str(transcript), *args)
        texts += [proc.stdout, proc.stderr]
    texts.append(out.read_text())
    assert len(planted.planted) > len(KINDS)
    assert [_leaks(text, planted.planted) for text in texts] == [[]] * len(texts)


def test_json_shape(env: Env, planted: Corpus, transcript: Path) -> None:
    proc = env.cli("redact", str(transcript), "--json")
    data = json.loads(proc.stdout)
    _, expected, report = _expected(planted.data())
    assert set(data) >= {"file", "lines", "bytes_in", "bytes_out", "counts", "findings", "ruleset"}
    assert data["file"] == str(transcript)
    assert data["lines"] == len(planted.lines) == report.lines
    assert data["bytes_in"] == len(planted.data())
    assert data["bytes_out"] == report.bytes_out < data["bytes_in"]
    assert data["counts"] == report.counts
    assert data["total"] == sum(data["counts"].values())
    assert all(set(f) == {"rule", "line", "column"} for f in data["findings"])
    assert [(f["rule"], f["line"], f["column"]) for f in data["findings"]] == expected
    assert data["ruleset"] == Redactor().ruleset_id
    assert data["output"] is None
    assert proc.stderr == ""


def test_nothing_found_is_still_success(env: Env) -> None:
    path = env.root / "clean.jsonl"
    path.write_text('{"type": "user", "message": "run the tests"}\n')
    proc = env.cli("redact", str(path))
    assert proc.returncode == 0
    assert _findings(proc.stdout) == []
    assert "nothing to redact" in proc.stdout


# -- the redacted copy ----------------------------------------------------------------------------


def test_output_is_the_daemon_redaction_and_valid_jsonl(env: Env, planted: Corpus, transcript: Path) -> None:
    out = env.root / "out.jsonl"
    proc = env.cli("redact", str(transcript), "-o", str(out))
    expected, _, report = _expected(planted.data())
    assert out.read_bytes() == expected
    assert out.stat().st_mode & 0o777 == 0o600
    assert f"redacted copy written to {out} ({report.bytes_out} bytes)" in proc.stdout
    assert transcript.read_bytes() == planted.data()  # the input is never touched
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    lines = out.read_bytes().splitlines()
    assert len(lines) == len(planted.lines)
    for before, after in zip(planted.lines, lines, strict=True):
        try:
            json.loads(before)
        except ValueError:
            continue  # a plain-text line stays plain text
        json.loads(after)


def test_output_to_stdout_puts_the_report_on_stderr(env: Env, planted: Corpus, transcript: Path) -> None:
    expected, findings, _ = _expected(planted.data())
    proc = subprocess.run(
        [*_python_cli(), "redact", str(transcript), "-o", "-"], env=env.vars, capture_output=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout == expected
    assert _findings(proc.stderr.decode()) == findings
    assert "redacted copy written to stdout" in proc.stderr.decode()
    as_json = env.cli("redact", str(transcript), "-o", "-", "--json")
    assert json.loads(as_json.stderr)["output"] == "-"


def _python_cli() -> list[str]:
    """`Env.cli` decodes stdout as text; the redacted copy is compared byte for byte."""
    return [sys.executable, "-m", "tracekeeper"]


def test_output_onto_the_input_is_refused(env: Env, planted: Corpus, transcript: Path) -> None:
    link = env.root / "link.jsonl"
    link.symlink_to(transcript)
    hard = env.root / "hard.jsonl"
    os.link(transcript, hard)
    for target in (transcript, link, hard, Path(os.path.relpath(transcript, env.root))):
        proc = env.cli("redact", str(transcript), "-o", str(target), check=False)
        _one_error_line(proc, "refusing to overwrite")
    assert transcript.read_bytes() == planted.data()


def test_failing_closed_leaves_no_output(env: Env, planted: Corpus) -> None:
    """A line over the limit fails after whole blocks were already redacted: nothing may remain."""
    path = env.root / "long.jsonl"
    with path.open("wb") as fh:
        fh.write(planted.data() * 3)  # several blocks, so the temporary file has real content
        fh.truncate(fh.tell() + MAX_LINE_BYTES + 1)  # sparse: a NUL-filled line with no newline
    out = env.root / "out.jsonl"
    out.write_text("previous copy\n")
    proc = env.cli("redact", str(path), "-o", str(out), check=False)
    _one_error_line(proc, str(path), "not redacted", "longer than")
    assert out.read_text() == "previous copy\n"
    assert sorted(p.name for p in env.root.iterdir() if p.is_file()) == ["long.jsonl", "out.jsonl"]
    piped = subprocess.run(
        [*_python_cli(), "redact", str(path), "-o", "-"], env=env.vars, capture_output=True, check=False
    )
    assert piped.returncode == 1
    assert piped.stderr.decode().count("\n") == 1
    assert piped.stdout == b""  # spooled first: a pipe gets all of the copy or nothing


# -- a real transcript ----------------------------------------------------------------------------


def _plant(record: Any, text: str) -> bool:
    """Append ``text`` to the longest string in the record, as a tool output would carry it."""
    best: tuple[int, Any, Any] | None = None
    stack = [record]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if isinstance(value, str) and (best is None or len(value) > best[0]):
                best = (len(value), node, key)
            elif isinstance(value, dict | list):
                stack.append(value)
    if best is None:
        return False
    best[1][best[2]] += "\n" + text
    return True


def test_real_transcript_clean_then_with_planted_secrets(env: Env) -> None:
    data = REAL.read_bytes()
    clean = env.cli("redact", str(REAL), "--json")
    assert json.loads(clean.stdout)["counts"] == {}  # a published session: any finding is a false positive

    rng = random.Random(5)
    lines = data.splitlines(keepends=True)
    kinds = ["hf-token", "github-pat", "aws-access-key-id", "generic-password"]
    secrets: list[Planted] = []
    targets = [i for i, line in enumerate(lines) if b'"message"' in line][1 :: max(1, len(lines) // 8)][: len(kinds)]
    assert len(targets) == len(kinds)
    for index, kind in zip(targets, kinds, strict=True):
        record = json.loads(lines[index])
        secret = MAKERS[kind](rng)
        assert _plant(record, SNIPPETS[kind][0].format(s=secret))
        lines[index] = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        secrets.append(Planted(kind, secret, index))
    path = env.root / REAL.name
    path.write_bytes(b"".join(lines))
    out = env.root / "real.redacted.jsonl"

    proc = env.cli("redact", str(path), "-o", str(out))
    expected, findings, _ = _expected(path.read_bytes())
    assert _findings(proc.stdout) == findings
    assert sorted((rule, line) for rule, line, _ in findings) == sorted((p.kind, p.line + 1) for p in secrets)
    assert out.read_bytes() == expected
    assert len([json.loads(line) for line in out.read_bytes().splitlines()]) == len(lines)
    assert _leaks(proc.stdout + proc.stderr + out.read_text(), secrets) == []
    # Apart from the planted lines the copy is byte-for-byte the input.
    changed = [i for i, (a, b) in enumerate(zip(lines, expected.splitlines(keepends=True), strict=True)) if a != b]
    assert changed == sorted(targets)


# -- the user's config ----------------------------------------------------------------------------


def test_user_rule_and_allow_list_take_effect(env: Env, planted: Corpus, transcript: Path) -> None:
    allowed = next(p for p in planted.planted if p.kind == "hf-token")
    token = "acme_dk_" + random.Random(1).randbytes(16).hex()
    with transcript.open("ab") as fh:
        fh.write(json.dumps({"type": "user", "message": f"deploy with {token} now"}).encode() + b"\n")
    env.write_config(
        "[redaction]\n"
        f"allow = [{json.dumps(allowed.secret)}]\n\n"
        "[[redaction.rules]]\n"
        f"id = {json.dumps(USER_RULE['id'])}\n"
        f"pattern = {json.dumps(USER_RULE['pattern'])}\n"
        f"keywords = {json.dumps(USER_RULE['keywords'])}\n",
    )
    data = transcript.read_bytes()
    redactor = Redactor(
        RedactionConfig(
            extra_rules=(Rule(str(USER_RULE["id"]), str(USER_RULE["pattern"]), tuple(USER_RULE["keywords"])),),
            allow=(allowed.secret,),
        )
    )
    expected, findings, report = _expected(data, redactor)
    _, _, default = _expected(data)

    out = env.root / "out.jsonl"
    proc = env.cli("redact", str(transcript), "--json", "-o", str(out))
    result = json.loads(proc.stdout)
    assert result["counts"]["acme-deploy-key"] == 1
    assert result["counts"]["hf-token"] == default.counts["hf-token"] - allowed.count
    assert result["counts"] == report.counts
    assert [(f["rule"], f["line"], f["column"]) for f in result["findings"]] == findings
    assert ("acme-deploy-key", len(planted.lines) + 1) in {(f["rule"], f["line"]) for f in result["findings"]}
    assert result["ruleset"] == redactor.ruleset_id != Redactor().ruleset_id
    copy = out.read_bytes()
    assert copy == expected
    assert token.encode() not in copy and b"[REDACTED:acme-deploy-key]" in copy
    assert allowed.secret.encode() in copy  # the allow-list keeps it, exactly as the daemon would
    assert token not in proc.stdout + proc.stderr


def test_bad_user_regex_is_one_line(env: Env, transcript: Path) -> None:
    config = env.write_config('[[redaction.rules]]\nid = "broken"\npattern = "(unclosed"\nkeywords = ["x"]\n')
    proc = env.cli("redact", str(transcript), check=False)
    _one_error_line(proc, str(config), "'broken'", "invalid pattern")


@pytest.mark.parametrize(
    "text",
    ["[redaction\n", "[redaction]\nallow = 'not-a-list'\n", "[[redaction.rules]]\nid = 'no-pattern'\n"],
    ids=["toml", "allow", "rule"],
)
def test_broken_config_is_one_line(env: Env, transcript: Path, text: str) -> None:
    config = env.write_config(text)
    _one_error_line(env.cli("redact", str(transcript), check=False), str(config))


# -- unusable input ------------------------------------------------------------------------------


def test_missing_file_is_one_line(env: Env) -> None:
    missing = env.root / "nope.jsonl"
    _one_error_line(env.cli("redact", str(missing), check=False), str(missing), "does not exist")
    _one_error_line(env.cli("redact", str(missing), "-o", str(env.root / "x"), check=False), "does not exist")
    assert not (env.root / "x").exists()


def test_directory_is_one_line(env: Env) -> None:
    _one_error_line(env.cli("redact", str(env.root), check=False), "is a directory")


def test_unreadable_file_is_one_line(env: Env) -> None:
    """A FIFO stands in for an unreadable file: mode bits do not stop root, who runs CI."""
    fifo = env.root / "not-a-file.jsonl"
    os.mkfifo(fifo)
    _one_error_line(env.cli("redact", str(fifo), check=False, timeout=20))


def test_output_into_a_missing_directory_is_one_line(env: Env, transcript: Path) -> None:
    _one_error_line(env.cli("redact", str(transcript), "-o", str(env.root / "no" / "out.jsonl"), check=False))


def test_scrub_home_applies_as_in_the_daemon(env: Env) -> None:
    """`scrub_home = true` shows in the copy: home becomes `~`, the user name `<user>`."""
    user = pwd.getpwuid(os.getuid()).pw_name  # the CLI's getpass.getuser(): the harness sets no USER
    path = env.root / "home.jsonl"
    path.write_text(json.dumps({"cwd": f"{env.home}/src/app", "text": f"{user}@laptop"}) + "\n")
    env.write_config("[redaction]\nscrub_home = true\n")
    out = env.root / "out.jsonl"
    env.cli("redact", str(path), "-o", str(out))
    expected, _ = from_settings(RedactionSettings(scrub_home=True), home=str(env.home), user=user).redact_bytes(
        path.read_bytes()
    )
    assert out.read_bytes() == expected
    assert json.loads(out.read_bytes()) == {"cwd": "~/src/app", "text": "<user>@laptop"}
