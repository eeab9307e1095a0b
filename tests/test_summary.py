"""`tracekeeper summary RANGE` on a real repository whose commits the real daemon noted.

The range holds a Codex commit whose prompt is hostile, a commit made with no session, and a
Claude commit. The Markdown is rendered with a real CommonMark renderer (markdown-it-py, GFM
tables on) and the HTML it makes is checked: the table keeps its shape, no script, image, raw
HTML or `javascript:` link gets through, and no @mention or fence survives as markup. The same
summary is then made on a teammate's machine (no transcript, no queue: read from the Hub
stand-in) and in CI without a token (listed with links and tokens, conversation unavailable).
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from tracekeeper.summary import markdown_text
from tracekeeperd.agents.usage import Usage

from .harness import Env, Repo, make_repo, running_daemon, wait_for
from .hubstub import running_hub
from .test_usage import CLAUDE_EDIT_USAGE, CODEX_TOOLS_USAGE
from .test_usage_notes import CLAUDE_EDIT_ID, CODEX_TOOLS_ID
from .transcripts import CLAUDE_EDIT, CODEX_TOOLS, FIXTURES, load

HOSTILE = (
    "```\n@octocat #12 <script>alert(1)</script> [go](javascript:alert(3)) ![p](https://evil.example/p.png)"
    " </td></tr></table><img src=x onerror=alert(2)> <!-- x --> `c` *b* | a |\n# H\n``` \x1b]0;t\x07"
)
#: The Codex fixture's one prompt (line 10, and its response_item twin), replaced by HOSTILE.
CODEX_PROMPT = "[REDACTED_MESSAGE len=98 sha=c002ff99]"


def _counts(relpath: str) -> tuple[int, int]:
    """(user turns, tool calls) in a whole fixture, as the agent's format reads it."""
    fmt, _path, lines = load(relpath)
    turns = list(fmt.turns(enumerate(lines, start=1)))
    return sum(t.kind == "user" for t in turns), sum(t.kind == "tool_call" for t in turns)


def _noted_commit(repo: Repo, transcript: Path, data: bytes, message: str, **session: str) -> str:
    transcript.parent.mkdir(parents=True, exist_ok=True)
    transcript.write_bytes(data)
    active = repo.activate(transcript, **session)
    sha = repo.commit(message, file=f"{session['agent']}.py")
    wait_for(lambda: repo.note(sha), what=f"the note of {message}")
    active.unlink()  # the session ends
    return sha


def _build(env: Env) -> tuple[Repo, list[str]]:
    repo = make_repo(env).install()
    repo.commit("base", file="README")
    repo.git("branch", "upstream")  # stands for origin/main
    original = (FIXTURES / CODEX_TOOLS).read_bytes()
    codex = original.replace(json.dumps(CODEX_PROMPT).encode(), json.dumps(HOSTILE).encode())
    assert json.dumps(HOSTILE).encode() in codex
    first = _noted_commit(
        repo,
        env.home / ".codex/sessions/2026/02/23" / Path(CODEX_TOOLS).name,
        codex,
        "Parse the header",
        agent="codex",
        session_id=CODEX_TOOLS_ID,
    )
    plain = repo.commit("Bump the version | by hand", file="VERSION")
    third = _noted_commit(
        repo,
        env.home / f".claude/projects/-src-app/{CLAUDE_EDIT_ID}.jsonl",
        (FIXTURES / CLAUDE_EDIT).read_bytes(),
        "Add farewell",
        agent="claude",
        session_id=CLAUDE_EDIT_ID,
    )
    return repo, [first, plain, third]


class _Html(HTMLParser):
    """Every tag and attribute of the rendered Markdown, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data: str) -> None:
        self.tags.append(("!--", {}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _render(markdown: str) -> _Html:
    # GitHub's renderer is CommonMark + GFM tables; raw HTML on, as on GitHub (which sanitises
    # it after, but a summary must not depend on that).
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    parsed = _Html()
    parsed.feed(html)
    return parsed


def _summary(env: Env, repo: Repo, *extra: str) -> Any:
    return json.loads(env.cli("summary", "upstream..HEAD", "--json", "-C", str(repo.path), *extra).stdout)


def test_summary_of_a_range_with_two_agents_and_an_unnoted_commit(env: Env) -> None:
    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write")
        with running_daemon(env):
            repo, (first, plain, third) = _build(env)
        markdown = env.cli("summary", "upstream..HEAD", "-C", str(repo.path)).stdout
        data = _summary(env, repo)
        # A teammate's machine: no transcript, no queue, no snapshot; the store has the truth.
        shutil.rmtree(env.home / ".codex")
        shutil.rmtree(env.home / ".claude")
        shutil.rmtree(env.state)
        remote = _summary(env, repo)
        # CI without a token for the bucket: the trail is listed, the conversation is not.
        del env.vars["HF_TOKEN"]
        tokenless = _summary(env, repo)
        tokenless_md = env.cli("summary", "upstream..HEAD", "-C", str(repo.path)).stdout

    # --- JSON: oldest first, every commit, the un-noted one said so ---
    assert data["range"] == "upstream..HEAD" and data["order"] == "oldest-first"
    assert [c["commit"] for c in data["commits"]] == [first, plain, third]
    assert [c["noted"] for c in data["commits"]] == [True, False, True]
    assert data["commits"][1]["sessions"] == [] and data["commits"][1]["files"] == ["VERSION"]
    (codex,) = data["commits"][0]["sessions"]
    (claude,) = data["commits"][2]["sessions"]
    assert codex["agent"] == "codex" and claude["agent"] == "claude"
    assert codex["url"].startswith(f"{hub.endpoint}/buckets/alice/agent-traces/")
    assert codex["first_prompt"] == HOSTILE  # JSON carries the text as it is; json escapes it
    assert claude["first_prompt"].startswith("In this repo, add a farewell(name: str) helper")
    assert (codex["turns"], codex["tool_calls"]) == _counts(CODEX_TOOLS)
    assert (claude["turns"], claude["tool_calls"]) == _counts(CLAUDE_EDIT)
    assert codex["source"] == "transcript" and codex["unavailable"] is None
    assert Usage.from_json(codex["usage"]["models"]) == CODEX_TOOLS_USAGE
    assert Usage.from_json(claude["usage"]["models"]) == CLAUDE_EDIT_USAGE
    assert data["commits"][1]["usage"] == {"known": None, "unknown_sessions": 0, "sessions": 0}
    totals = data["totals"]
    assert {k: totals[k] for k in ("commits", "commits_with_sessions", "sessions", "sessions_unreadable")} == {
        "commits": 3,
        "commits_with_sessions": 2,
        "sessions": 2,
        "sessions_unreadable": 0,
    }
    assert totals["turns"] == codex["turns"] + claude["turns"]
    assert totals["tool_calls"] == codex["tool_calls"] + claude["tool_calls"]
    assert totals["files"] == 3  # codex.py, VERSION, claude.py
    assert Usage.from_json(totals["usage"]["known"]["models"]) == CODEX_TOOLS_USAGE + CLAUDE_EDIT_USAGE
    assert totals["usage"]["unknown_sessions"] == 0

    # --- the same from the store, and without access to it ---
    assert [s["source"] for c in remote["commits"] for s in c["sessions"]] == ["store", "store"]
    assert [s["first_prompt"] for c in remote["commits"] for s in c["sessions"]] == [
        codex["first_prompt"],
        claude["first_prompt"],
    ]
    unavailable = [s for c in tokenless["commits"] for s in c["sessions"]]
    assert [(s["first_prompt"], s["turns"]) for s in unavailable] == [(None, None), (None, None)]
    assert all(s["unavailable"] for s in unavailable)
    assert [s["usage"] for s in unavailable] == [codex["usage"], claude["usage"]]  # tokens are in the note
    assert tokenless["totals"]["sessions_unreadable"] == 2
    assert "conversation not available" in tokenless_md

    # --- Markdown, as GitHub would render it ---
    page = _render(markdown)
    tags = [tag for tag, _ in page.tags]
    assert tags.count("table") == 1 and tags.count("tr") == 4  # the header and one row per commit
    assert tags.count("td") == 3 * 7
    assert "script" not in tags and "img" not in tags and "!--" not in tags and "pre" not in tags
    assert "h1" not in tags and "strong" in tags  # only our own "Totals"
    assert tags.count("em") == 1  # only our own "no agent session noted"
    assert tags.count("code") == 4  # the three short commit ids and the footer's command, none from the prompt
    hrefs = [attrs.get("href") or "" for tag, attrs in page.tags if tag == "a"]
    assert len(hrefs) == 2 and all(href.startswith(f"{hub.endpoint}/buckets/") for href in hrefs)
    text = "".join(page.text)
    assert "<script>alert(1)</script>" in text  # shown as written…
    assert "[go](javascript:alert(3))" in text and "`c` *b* | a |" in text  # …never as markup
    assert "@octocat" not in text and "@\u200boctocat" in text  # no mention
    assert "#12" not in text  # no issue reference
    assert "\x1b" not in markdown and "\x07" not in markdown
    assert "no agent session noted" in text
    assert "Bump the version | by hand" in text
    assert re.search(r"Totals: 3 commits \(2 with an agent session\) · 2 sessions", text)
    # Per-model totals, as the agents recorded them.
    assert "gpt-5.3-codex: 298,373 in (238,848 cached) / 1,123 out" in text
    assert "claude-opus-4-8: 231,769 in (196,455 cached) / 1,044 out" in text


def test_markdown_text_is_inert_whatever_the_input() -> None:
    for hostile in (HOSTILE, "```", "</details>", "a\r\nb", "[x]: javascript:alert(1)", "|" * 5, "\\|", "@@a"):
        html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text(hostile))
        assert html.startswith("<p>") and html.count("<p>") == 1, (hostile, html)
        inner = html.removeprefix("<p>").removesuffix("</p>\n")
        assert "<" not in inner.replace("&lt;", ""), (hostile, html)  # no tag of any kind


def test_summary_errors_are_one_line(env: Env) -> None:
    repo = make_repo(env)
    repo.commit("only")
    bad = env.cli("summary", "nope..HEAD", "-C", str(repo.path), check=False)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("Error: cannot list the commits of 'nope..HEAD'")
    option = env.cli("summary", "-C", str(repo.path), "--", "--all", check=False)
    assert option.returncode == 1 and "is not a revision range" in option.stderr
    empty = env.cli("summary", "HEAD..HEAD", "-C", str(repo.path))
    assert "No commits." in empty.stdout


def test_totals_count_a_slice_shared_by_back_to_back_commits_once() -> None:
    """Commits made back to back with no new transcript lines share their range (docs/notes.md):
    each lists the slice and its tokens, the totals count it once."""
    from tracekeeper.summary import CommitSummary, SessionSummary, Summary, as_json, as_markdown
    from tracekeeperd.notes import TraceLink

    url = "https://huggingface.co/buckets/me/t/tree/app/sessions/codex-s1.jsonl"
    shared = TraceLink(url, "codex", "s1", 1, 19, 100, "ab" * 32, usage=CODEX_TOOLS_USAGE)
    later = TraceLink(url, "codex", "s1", 20, 30, 200, "cd" * 32, usage=None)
    summary = Summary(
        "a..b",
        [
            CommitSummary("1" * 40, "A", "first", ["a.py"], [SessionSummary(shared, "do it", 1, 5)]),
            CommitSummary("2" * 40, "A", "second", ["b.py"], [SessionSummary(shared, "do it", 1, 5)]),
            CommitSummary("3" * 40, "A", "third", ["a.py"], [SessionSummary(later, None, 0, 2)]),
        ],
    )
    totals = as_json(summary)["totals"]
    assert (totals["sessions"], totals["turns"], totals["tool_calls"], totals["files"]) == (1, 1, 7, 2)
    assert Usage.from_json(totals["usage"]["known"]["models"]) == CODEX_TOOLS_USAGE
    assert totals["usage"]["unknown_sessions"] == 1  # the later slice's note has no usage
    assert [c["usage"]["known"] is not None for c in as_json(summary)["commits"]] == [True, True, False]
    assert "+ 1 unknown" in as_markdown(summary).split("**Totals:**")[1]


def test_commits_of_one_session_read_it_once_and_a_slice_without_a_prompt_shows_the_one_it_answers(
    env: Env,
) -> None:
    from .test_usage_notes import codex_commits_in_the_hub

    # CODEX_TOOLS, commits after line 19 and at the end (line 63)
    with codex_commits_in_the_hub(env) as (hub, repo, (first, _last)):
        shutil.rmtree(env.home / ".codex")
        shutil.rmtree(env.state)  # a teammate's machine: everything comes from the store
        name = f"codex-{CODEX_TOOLS_ID}.jsonl"
        hub.clear_requests()
        env.cli("show", first, "--json", "-C", str(repo.path))
        one_read = hub.count(path_suffix=name)
        hub.clear_requests()
        data = json.loads(env.cli("summary", "HEAD", "--json", "-C", str(repo.path)).stdout)
        assert one_read > 0 and hub.count(path_suffix=name) == one_read
    sessions = [c["sessions"][0] for c in data["commits"]]
    assert [s["source"] for s in sessions] == ["store", "store"]
    # The prompt is on line 10; lines 20-63 hold only the agent's work on it.
    assert sessions[0]["turns"] == 1 and sessions[1]["turns"] == 0
    assert sessions[0]["first_prompt"] == sessions[1]["first_prompt"] == CODEX_PROMPT
    assert sessions[1]["tool_calls"] == _counts(CODEX_TOOLS)[1] - sessions[0]["tool_calls"]


def test_a_commit_whose_link_was_forgotten_says_so_and_an_empty_range_says_no_commits() -> None:
    from tracekeeper.summary import CommitSummary, Summary, as_json, as_markdown

    summary = Summary("a..b", [CommitSummary("4" * 40, "A", "gone", ["x.py"], [], forgotten=1)])
    assert "| `444444444444` gone | *forgotten* |" in as_markdown(summary)
    assert as_json(summary)["commits"][0]["forgotten_sessions"] == 1
    assert as_json(summary)["totals"]["usage"] == {"known": None, "unknown_sessions": 0, "sessions": 0}
    assert "No commits." in as_markdown(Summary("a..a", []))
