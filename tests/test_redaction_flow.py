"""Secrets never leave the machine: the daemon redacts before any upload, and says so in the note."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tracekeeperd import outgoing
from tracekeeperd.redact import RedactionError, Redactor, Resume

from .harness import Env, Repo, daemon_once, make_repo, note_links, running_daemon, wait_for
from .secretgen import corpus


def _uploaded(env: Env, repo: Repo, transcript: Path) -> tuple[dict[str, Any], bytes]:
    """Commit with `transcript` active under the real daemon; the note's link and the copy it points at."""
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit_noted("x")
    (meta,) = note_links(repo.note(sha))
    return meta, env.stored(meta["url"]).read_bytes()


def test_planted_secrets_are_removed_before_upload_and_counted_in_the_note(env: Env) -> None:
    planted = corpus(rounds=1)
    repo = make_repo(env).install()
    transcript = env.transcript()
    transcript.write_bytes(b"".join(planted.lines))
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit("x")
        note = wait_for(lambda: repo.note(sha), what="the note")
        (job,) = env.status("--all")["jobs"]
    (meta,) = note_links(note)
    stored = env.stored(meta["url"]).read_bytes()
    for secret in planted.planted:
        assert secret.secret.encode() not in stored, secret.kind
    for before, after in zip(transcript.read_bytes().splitlines(), stored.splitlines(), strict=True):
        if before.startswith(b"{"):
            json.loads(after)  # a JSON line stays valid JSON after redaction
    assert stored.count(b"\n") == transcript.read_bytes().count(b"\n")
    counts = meta["redacted"]["counts"]
    assert sum(counts.values()) >= len(planted.planted)
    assert {p.kind for p in planted.planted} <= set(counts)
    assert job["redactions"] == meta["redacted"]
    # The note's length and hash describe the redacted object, so anyone can verify it.

    assert meta["bytes"] == len(stored)
    assert meta["sha256"] == hashlib.sha256(stored).hexdigest()
    secrets = [p.secret for p in planted.planted]
    status_text = env.cli("status", "--all", "--json").stdout + env.cli("status", "--all").stdout
    assert not any(secret in status_text for secret in secrets)


def test_a_token_on_its_own_line_in_codex_tool_output_is_removed_and_counted(env: Env) -> None:
    """The issue's repro: `cat ~/.cache/huggingface/token` in Codex, the token right after the bytes `\\n`."""
    token = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"
    stamp = "2026-11-25T09:00:0{}.000Z"
    call = {"command": ["bash", "-lc", "echo token; cat ~/.cache/huggingface/token"], "workdir": "/w"}
    records = [
        {"timestamp": stamp.format(0), "type": "session_meta", "payload": {"id": "s", "cwd": "/w"}},
        {
            "timestamp": stamp.format(1),
            "type": "response_item",
            "payload": {"type": "function_call", "name": "shell", "arguments": json.dumps(call), "call_id": "call_1"},
        },
        {
            "timestamp": stamp.format(2),
            "type": "response_item",
            "payload": {"type": "function_call_output", "call_id": "call_1", "output": f"token\n{token}\n"},
        },
    ]
    repo = make_repo(env).install()
    transcript = env.transcript()
    transcript.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    assert b"\\n" + token.encode() in transcript.read_bytes()  # the bytes the old word boundary missed
    meta, stored = _uploaded(env, repo, transcript)
    assert token[3:].encode() not in stored
    assert json.loads(stored.splitlines()[2])["payload"]["output"] == "token\n[REDACTED:hf-token]\n"
    assert meta["redacted"]["counts"] == {"hf-token": 1}
    assert meta["redacted"]["ruleset"] == Redactor().ruleset_id


def test_show_verifies_a_redacted_commit_from_the_local_transcript(env: Env) -> None:
    planted = corpus(rounds=1)
    repo = make_repo(env).install()
    transcript = env.transcript()
    transcript.write_bytes(b"".join(planted.lines[:40]))
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit_noted("x")
    data = json.loads(env.cli("show", sha, "-C", str(repo.path), "--json").stdout)
    (session,) = data["sessions"]
    assert session["verified"] is True
    assert session["source"] == "transcript"  # redacted locally the way the daemon did
    shown = json.dumps(session)
    assert not any(p.secret in shown for p in planted.planted[:10])


def test_a_broken_user_rule_stops_the_daemon_with_one_line(env: Env) -> None:
    config = env.write_config('[[redaction.rules]]\nid = "mine"\npattern = "("\nkeywords = ["x"]\n')
    proc = daemon_once(env)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"tracekeeperd: error: {config}: redaction: ")
    assert proc.stderr.count("\n") == 1


def test_user_rules_and_allow_list_apply_to_uploads(env: Env) -> None:
    env.write_config(
        '[redaction]\nallow = ["hf_PublicSampleTokenForDocsOnly000000"]\n'
        '[[redaction.rules]]\nid = "acme-key"\npattern = "acme_[a-z0-9]{16}"\nkeywords = ["acme_"]\n'
    )
    repo = make_repo(env).install()
    transcript = env.transcript()
    transcript.write_text(
        json.dumps({"type": "x", "text": "key acme_0123456789abcdef and hf_PublicSampleTokenForDocsOnly000000"}) + "\n"
    )
    meta, data = _uploaded(env, repo, transcript)
    stored = data.decode()
    assert "acme_0123456789abcdef" not in stored and "[REDACTED:acme-key]" in stored
    assert "hf_PublicSampleTokenForDocsOnly000000" in stored
    assert meta["redacted"]["counts"] == {"acme-key": 1}


def _outgoing_view(copies: outgoing.RedactedCopies, snapshot: Path, data: bytes, redactor: Redactor) -> outgoing.View:
    snapshot.write_bytes(data)
    lines = data.count(b"\n")
    return copies.view(
        snapshot,
        raw_bytes=len(data),
        raw_lines=lines,
        raw_sha256=hashlib.sha256(data).hexdigest(),
        lines=range(1, lines + 1),
        redactor=redactor,
    )


def test_outgoing_redacts_incrementally_and_equals_a_full_pass(tmp_path: Path) -> None:
    lines = corpus(rounds=1).lines
    redactor = Redactor()
    raw = b"".join(lines)
    cut = len(b"".join(lines[: len(lines) // 2]))
    grown_copies = outgoing.RedactedCopies(tmp_path / "grown")
    _outgoing_view(grown_copies, tmp_path / "a.jsonl", raw[:cut], redactor)
    grown = _outgoing_view(grown_copies, tmp_path / "a.jsonl", raw, redactor)
    full = _outgoing_view(outgoing.RedactedCopies(tmp_path / "full"), tmp_path / "b.jsonl", raw, redactor)
    assert grown.file.read_bytes() == full.file.read_bytes()
    assert grown.prefixes == full.prefixes
    assert grown.findings.read_bytes() == full.findings.read_bytes()
    n = len(lines) // 3
    length, _ = full.prefix(n)
    assert full.file.read_bytes()[:length] == redactor.redact_bytes(b"".join(lines[:n]))[0]


def test_outgoing_fails_closed(tmp_path: Path) -> None:
    class Broken(Redactor):
        def redact_piece(self, data: bytes, resume: Resume) -> tuple[bytes, object, Resume]:  # type: ignore[override]
            raise RedactionError("engine exploded")

    copies = outgoing.RedactedCopies(tmp_path / "redacted")
    with pytest.raises(RedactionError, match="engine exploded"):
        _outgoing_view(copies, tmp_path / "s.jsonl", b'{"a": 1}\n', Broken())

    class Joiner(Redactor):
        def redact_piece(self, data: bytes, resume: Resume) -> tuple[bytes, object, Resume]:  # type: ignore[override]
            out, report, after = super().redact_piece(data, resume)
            return out.replace(b"\n", b" ", 1), report, after

    with pytest.raises(RedactionError, match="changed the number of lines"):
        _outgoing_view(copies, tmp_path / "s.jsonl", b'{"a": 1}\n{"b": 2}\n', Joiner())


def test_a_string_taken_off_the_allow_list_leaves_with_the_next_upload_of_its_session(env: Env) -> None:
    """The real daemon, restarted with a new config between two commits of one session: the
    second upload (the whole session so far) must be redacted under the new settings, old lines
    too, not continue the copy the old settings made (its record matched on the rules alone)."""
    token = "hf_Zq8Rw3Lx0Vb5Nc7Tp1Yk4Mj9Hg2Fd6Sa"
    env.write_config(f'[redaction]\nallow = ["{token}"]\n')
    repo = make_repo(env).install()
    transcript = env.transcript()
    transcript.write_text(json.dumps({"type": "x", "text": f"sample {token}"}) + "\n")
    first, data = _uploaded(env, repo, transcript)
    assert token.encode() in data  # allowed, so kept
    env.write_config("[redaction]\nallow = []\n")
    with transcript.open("a") as fh:
        fh.write(json.dumps({"type": "x", "text": "more"}) + "\n")
    second, data = _uploaded(env, repo, transcript)
    assert second["url"] == first["url"]  # the same session, uploaded again whole
    assert token.encode() not in data and b"[REDACTED:hf-token]" in data
