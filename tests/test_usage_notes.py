"""Token usage in the note's meta line: rendering, parsing, and notes written before it existed.

The meta line's `usage` key is optional: a link whose agent records no usage renders exactly the
bytes it rendered before the key existed, so notes already written stay valid and a re-note of
the same commit is a no-op; a slice that holds usage records but spent nothing is a known zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tracekeeperd import notes, tokens
from tracekeeperd.agents import split_lines
from tracekeeperd.agents.reading import LineReader
from tracekeeperd.agents.usage import ModelUsage, Usage
from tracekeeperd.notes import META_PREFIX, TraceLink

from .harness import Env, Repo, make_repo, note_links, running_daemon, wait_for
from .hubstub import HubStub, running_hub
from .test_usage import (
    CLAUDE_EDIT_FIRST_MESSAGE,
    CLAUDE_EDIT_USAGE,
    CODEX_TOOLS_USAGE,
    GEMINI_JSONL_USAGE,
    GEMINI_LEGACY_USAGE,
    PI_USAGE,
)
from .transcripts import CLAUDE_EDIT, CODEX_TOOLS, COPILOT, CURSOR, FIXTURES, GEMINI_JSONL, GEMINI_LEGACY, PI

BUCKET = "alice/agent-traces"
CODEX_TOOLS_ID = "019c8bfe-ec25-79e0-97d7-bda6a9c575ff"
CLAUDE_EDIT_ID = "9a3f6c2e-0000-4000-8000-0000000000ed"
GEMINI_LEGACY_ID = "dcbe78d3-ea75-4786-929e-d6cff0fc00ed"
PI_ID = "019e963d-6bd6-7ade-8a49-256ac3391bdd"
CURSOR_ID = "3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f"
COPILOT_ID = "b0ff98c0-8e01-4b73-bf92-9649b139931b"

URL = "https://huggingface.co/buckets/me/agent-traces/tree/app-1a2b3c4d/sessions/codex-s1.jsonl"
BASE = TraceLink(url=URL, agent="codex", session_id="s1", first_line=1, last_line=12, bytes=3456, sha256="ab" * 32)
#: A meta line exactly as tracekeeper wrote it before usage existed.
OLD_META = (
    'hf-trace-meta: {"agent":"codex","bytes":3456,"lines":[1,12],"session":"s1",'
    f'"sha256":"{"ab" * 32}","url":"{URL}","v":1}}'
)
TWO_MODELS = Usage.of(
    {
        "gpt-5.3-codex": ModelUsage(input=298373, output=1123, cached=238848, reasoning=483),
        "claude-opus-4-8": ModelUsage(input=231769, output=1044, cached=196455, cache_write=31362),
    }
)


def _meta(link: TraceLink) -> dict[str, object]:
    line = link.lines()[1]
    assert line.startswith(META_PREFIX)
    value: dict[str, object] = json.loads(line[len(META_PREFIX) :])
    return value


def test_a_link_without_usage_renders_the_bytes_it_always_did() -> None:
    assert BASE.usage is None
    assert BASE.lines()[1] == OLD_META


def test_usage_renders_sorted_and_compact_and_round_trips() -> None:
    link = TraceLink(**{**BASE.__dict__, "usage": TWO_MODELS})
    line = link.lines()[1]
    assert (
        '"usage":{"claude-opus-4-8":{"cache_write":31362,"cached":196455,"input":231769,"output":1044},'
        '"gpt-5.3-codex":{"cached":238848,"input":298373,"output":1123,"reasoning":483}}' in line
    )
    assert ", " not in line and ": " not in line[len(META_PREFIX) :]
    assert list(_meta(link)) == sorted(_meta(link))  # the usage key sorts among the others
    (parsed,) = notes.parse("\n".join(link.lines()))
    assert parsed == link
    assert parsed.lines() == link.lines()  # parsing and rendering again is byte-identical


def test_a_known_zero_is_kept_apart_from_unknown() -> None:
    zero = TraceLink(**{**BASE.__dict__, "usage": Usage.of({})})
    assert _meta(zero)["usage"] == {}
    (parsed,) = notes.parse("\n".join(zero.lines()))
    assert parsed.usage == Usage.of({})
    assert parsed.usage is not None and parsed.usage.total() == ModelUsage()


def test_an_old_note_parses_with_usage_unknown() -> None:
    (parsed,) = notes.parse(f"hf-trace: {URL}\n{OLD_META}\n")
    assert parsed.usage is None
    assert parsed.lines()[1] == OLD_META


def test_a_damaged_usage_value_is_unknown_and_never_drops_the_link() -> None:
    for value in ('"lots"', "[1,2]", '{"m":{"input":-1,"output":2}}', '{"m":"x"}', "null"):
        line = OLD_META[:-1] + f',"usage":{value}}}'
        (parsed,) = notes.parse(line)
        assert parsed.url == URL and parsed.usage is None, value


# --- the daemon writes usage into real notes -------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One agent's real fixture, where that agent writes it, and the commits made along it."""

    agent: str
    fixture: str
    home_path: str  # under $HOME
    session_id: str
    cuts: tuple[int, ...] = ()  # commit after these many lines, then once more at the end


CASES = [
    Case("codex", CODEX_TOOLS, ".codex/sessions/2026/02/23/" + Path(CODEX_TOOLS).name, CODEX_TOOLS_ID, (19,)),
    # Lines 5-6 of the edit session repeat line 4's message: a commit there is a known zero.
    Case("claude", CLAUDE_EDIT, ".claude/projects/-src-app/" + CLAUDE_EDIT_ID + ".jsonl", CLAUDE_EDIT_ID, (4, 6)),
    Case("gemini", GEMINI_JSONL, ".gemini/tmp/demo/chats/" + Path(GEMINI_JSONL).name, "7c1d2e3f"),
    Case("gemini", GEMINI_LEGACY, ".gemini/tmp/abc/chats/session-2026-06-05T04-59-dcbe78d3.json", GEMINI_LEGACY_ID),
    Case("pi", PI, ".pi/agent/sessions/--tmp-work--/2026-06-05T05-24-28-246Z_" + PI_ID + ".jsonl", PI_ID),
    Case("cursor", CURSOR, ".cursor/projects/home-dev-src-demo/agent-transcripts/" + Path(CURSOR).name, CURSOR_ID),
    Case("copilot", COPILOT, ".copilot/session-state/" + COPILOT_ID + "/events.jsonl", COPILOT_ID),
]


def _commit_along(env: Env, case: Case, index: int) -> list[str]:
    """Commits made while the agent writes its transcript; the daemon notes each one."""
    repo = make_repo(env, f"app{index}").install()
    source = FIXTURES / case.fixture
    transcript = env.home / case.home_path
    transcript.parent.mkdir(parents=True, exist_ok=True)
    repo.activate(transcript, agent=case.agent, session_id=case.session_id)
    lines = source.read_bytes().splitlines(keepends=True)
    shas = []
    for cut in [*case.cuts, len(lines)]:
        transcript.write_bytes(b"".join(lines[:cut]))
        sha = repo.commit(f"{case.agent} at line {cut}", file=f"f{cut}.txt")
        wait_for(lambda sha=sha: repo.note(sha), what=f"the note of {case.agent} at line {cut}")
        shas.append(sha)
    return [repo.note(sha) for sha in shas]


@contextmanager
def codex_commits_in_the_hub(env: Env) -> Iterator[tuple[HubStub, Repo, list[str]]]:
    """The Hub stand-in holding CASES[0]'s session (Codex), uploaded by the real daemon for two
    commits made along it; the hub, the repo and the commits, oldest first."""
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write")
        with running_daemon(env):
            _commit_along(env, CASES[0], 0)
        repo = Repo(env, env.root / "src" / "app0")
        yield hub, repo, repo.git("rev-list", "--reverse", "HEAD").split()


def test_the_daemon_notes_each_slices_tokens_for_every_agent_that_records_them(env: Env) -> None:
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write")
        with running_daemon(env):
            noted = {(case.agent, case.fixture): _commit_along(env, case, i) for i, case in enumerate(CASES)}
        uploaded = hub.files(BUCKET)
    assert len(uploaded) == len(CASES)  # through the real huggingface_hub/hf_xet into the stand-in

    def usages(case: Case) -> list[Usage | None]:
        out = []
        for text in noted[(case.agent, case.fixture)]:
            (meta,) = note_links(text)
            assert meta["agent"] == case.agent
            out.append(Usage.from_json(meta["usage"]) if "usage" in meta else None)
        return out

    codex, claude, gemini, legacy, pi, cursor, copilot = CASES
    # Codex: lines 1-19 hold the first response; 20-63 the five others. Together: the session.
    first, rest = usages(codex)
    assert first == Usage.of({"gpt-5.3-codex": ModelUsage(input=42772, output=204, cached=3456, reasoning=124)})
    assert rest is not None and first + rest == CODEX_TOOLS_USAGE
    # Claude: the first message (lines 1-4), a known zero (5-6 repeat it), then the other four.
    first, zero, rest = usages(claude)
    assert first == CLAUDE_EDIT_FIRST_MESSAGE
    assert zero == Usage.of({})
    assert rest is not None and first + zero + rest == CLAUDE_EDIT_USAGE
    assert usages(gemini) == [GEMINI_JSONL_USAGE]
    assert usages(legacy) == [GEMINI_LEGACY_USAGE]  # the whole document, as its range is
    assert usages(pi) == [PI_USAGE]
    # Agents that record no usage: no key at all, the meta line as it was before usage existed.
    for case in (cursor, copilot):
        (text,) = noted[(case.agent, case.fixture)]
        assert usages(case) == [None]
        assert '"usage"' not in text


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), chunk=st.integers(min_value=1, max_value=64), cut=st.integers(0, 300))
def test_streamed_lines_are_numbered_like_split_lines(tmp_path_factory: Any, data: bytes, chunk: int, cut: int) -> None:
    """The worker streams a snapshot in chunks; line n must be the note's line n whatever the chunk
    size: CRs dropped, blank lines kept, a last line without its newline not a line yet."""
    path = tmp_path_factory.mktemp("lines") / "snapshot.jsonl"
    path.write_bytes(data + b"tail after the size")
    size = min(cut, len(data))
    expected = list(enumerate(split_lines(data[:size])[0], start=1))
    with path.open("rb") as fh:
        assert list(LineReader(fh, 0, size, 1, chunk)) == expected


# --- log and show ------------------------------------------------------------------------------


def _cli_json(env: Env, *args: str) -> Any:
    return json.loads(env.cli(*args).stdout)


def test_log_and_show_give_tokens_per_model_and_total_and_unknown_for_an_old_note(env: Env) -> None:
    with codex_commits_in_the_hub(env) as (_hub, repo, (first, last)):
        # A commit noted before usage existed: the same link, its meta line without the key.
        old = repo.commit("noted by an older tracekeeper", file="old.txt")
        link, meta = repo.note(last).splitlines()
        old_meta = json.loads(meta.removeprefix(META_PREFIX))
        del old_meta["usage"]
        old_line = META_PREFIX + json.dumps(old_meta, sort_keys=True, separators=(",", ":"))
        notes.add(repo.git_dir, "refs/notes/hf-traces", {old: [link, old_line]})

        logged = _cli_json(env, "log", "--json", "-C", str(repo.path))["commits"]
        shown_first = _cli_json(env, "show", first, "--json", "-C", str(repo.path))["sessions"]
        shown_old = _cli_json(env, "show", old, "--json", "-C", str(repo.path))["sessions"]
        log_text = env.cli("log", "-C", str(repo.path)).stdout
        show_text = env.cli("show", first, "-C", str(repo.path)).stdout
        show_old_text = env.cli("show", old, "-C", str(repo.path)).stdout

    first_usage = {
        "models": {"gpt-5.3-codex": {"input": 42772, "output": 204, "cached": 3456, "reasoning": 124}},
        "total": {"input": 42772, "output": 204, "cached": 3456, "reasoning": 124},
    }
    by_commit = {entry["commit"]: entry["sessions"] for entry in logged}
    assert [s["usage"] for s in by_commit[first]] == [first_usage]
    assert [s["usage"] for s in by_commit[old]] == [None]
    assert by_commit[last][0]["usage"]["total"]["input"] == 298373 - 42772
    assert [s["usage"] for s in shown_first] == [first_usage]
    assert [s["usage"] for s in shown_old] == [None]
    assert shown_old[0]["verified"] is True  # an old note still reads as it did
    assert "tokens 42,772 in (3,456 cached) / 204 out · gpt-5.3-codex" in log_text
    assert "tokens unknown" in log_text
    assert "tokens 42,772 in (3,456 cached) / 204 out · gpt-5.3-codex" in show_text
    assert "tokens unknown" in show_old_text


def test_usage_text_names_every_model_and_sums_them() -> None:
    from tracekeeper.usage_view import Tally, usage_json, usage_text

    assert usage_text(None) == "tokens unknown"
    assert usage_text(Usage.of({})) == "tokens 0"
    assert usage_text(TWO_MODELS) == (
        "tokens 530,142 in (435,303 cached) / 2,167 out · claude-opus-4-8 231,769 in (196,455 cached) / 1,044 out;"
        " gpt-5.3-codex 298,373 in (238,848 cached) / 1,123 out"
    )
    total = usage_json(TWO_MODELS)
    assert total is not None and total["total"] == {
        "input": 530142,
        "output": 2167,
        "cached": 435303,
        "cache_write": 31362,
        "reasoning": 483,
    }
    tally = Tally.of([TWO_MODELS, None, Usage.of({})])
    assert tally.known == TWO_MODELS and tally.unknown == 1 and tally.links == 3
    assert tally.text().endswith("(+ 1 session unknown)")
    assert Tally.of([None, None]).text() == "tokens unknown"


def test_a_link_noted_before_and_after_usage_existed_reads_as_one_link_with_usage() -> None:
    """Notes merge line by line: a job noted by an older daemon and again by a newer one leaves two
    meta lines for the same slice, one with usage. Readers get one link, with what either says."""
    with_usage = TraceLink(**{**BASE.__dict__, "usage": TWO_MODELS})
    text = "\n".join([*BASE.lines(), with_usage.lines()[1]])
    assert notes.parse(text) == [with_usage]
    assert notes.parse("\n".join([*with_usage.lines(), OLD_META])) == [with_usage]
    # Another slice of the same session (a later commit's range) stays its own link.
    later = TraceLink(**{**BASE.__dict__, "first_line": 13, "last_line": 20})
    assert notes.parse("\n".join([*BASE.lines(), *later.lines()])) == [BASE, later]


def test_a_model_name_is_redacted_before_it_reaches_the_note(tmp_path: Path) -> None:
    """Usage is read from the raw snapshot (ids must not be rewritten), but the note is pushed with
    the commit: a model name is transcript text like any other, and a secret in it (a token pasted
    into a model setting, a hostile transcript) must be redacted as in the uploaded copy."""
    from tracekeeperd.protocol import JobState
    from tracekeeperd.queue import Job
    from tracekeeperd.redact import Redactor

    secret = "ghp_" + "Q7x9Lm2Vb8Nc4Zr6Tw1Ky3Hp5Jd0Fs8Ga2Eu"
    snapshot = tmp_path / "claude-edit.jsonl"
    data = (FIXTURES / CLAUDE_EDIT).read_bytes().replace(b'"model":"claude-opus-4-8"', f'"model":"{secret}"'.encode())
    assert secret.encode() in data
    snapshot.write_bytes(data)
    job = Job(
        id=1, repo_key="r", repo_display="r", git_dir=str(tmp_path), work_tree=None, commit_sha="a" * 40,
        agent="claude", session_id=CLAUDE_EDIT_ID, transcript=str(snapshot), snapshot=str(snapshot),
        bytes=len(data), first_line=1, last_line=data.count(b"\n"), sha256=None, remote_path=None,
        state=JobState.UPLOADING, attempts=0, next_attempt_at=None, last_error=None, url=None,
        created_at=0.0, updated_at=0.0,
    )  # fmt: skip
    usage = tokens.job_usage(job, Redactor())
    assert usage is not None and usage.total() == CLAUDE_EDIT_USAGE.total()
    assert secret not in json.dumps(usage.to_json())
    assert list(usage.by_model()) == ["[REDACTED:github-pat]"]
