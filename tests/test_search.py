"""`tracekeeper search`: the full-text index of linked sessions, rebuilt from notes and the store,
and kept by the daemon as it notes commits.

Real git repositories with trace notes in the documented format whose URLs are `file://` copies
of the fixture transcripts (as in tests/test_why_lib.py: a teammate's machine that reads the
store it is configured for), the real CLI as a process, and the real daemon with its local store. Nothing is mocked.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import replace
from pathlib import Path

import pytest

from tracekeeper import search as search_mod
from tracekeeper.search import NotIndexed, ReindexIncomplete, SearchQueryError, reindex, search
from tracekeeper.why import why
from tracekeeperd import redact
from tracekeeperd.config import RedactionSettings
from tracekeeperd.paths import Paths

from .harness import UUID_A, Env, Repo, index_bytes, make_repo, running_daemon, wait_for
from .test_why_lib import (
    CLAUDE,
    CODEX,
    COPILOT,
    CURSOR,
    FAREWELL,
    FIXTURES,
    GEMINI,
    PI,
    REF,
    Transcript,
    commit,
    link,
    paths_for,
)

pytestmark = pytest.mark.usefixtures("configured_store")  # the notes' file:// store is this machine's

#: (transcript, a word of its first prompt, the line of that prompt)
PROMPT_WORDS = [
    (CLAUDE, "farewell", 1),
    (PI, "farewell", 4),
    (CODEX, "slugify", 6),
    (GEMINI, "dataclass", 2),
    (CURSOR, "verbose", 1),
    (COPILOT, "failing", 3),
]


def _lines(transcript: Transcript) -> int:
    return (FIXTURES / transcript.relpath).read_bytes().count(b"\n")


def _reindex(env: Env, repo: Repo, paths: Paths | None = None) -> int:
    return reindex(
        repo.path, paths=paths or paths_for(env), notes_ref=REF, redactor=redact.from_settings(RedactionSettings())
    )


def _secret() -> str:
    """A well-formed GitHub token with a random body (tests/secretgen.py's way): none is real."""
    rng = random.Random(1103)
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


def _store_copy(env: Env, transcript: Transcript, old: str, new: str) -> None:
    """The store's copy of a fixture with `old` replaced (before `link` copies the original)."""
    store = env.root / "store" / transcript.agent / Path(transcript.relpath).name
    store.parent.mkdir(parents=True, exist_ok=True)
    text = (FIXTURES / transcript.relpath).read_text()
    assert old in text
    store.write_text(text.replace(old, new, 1))


def test_search_finds_a_prompt_word_from_each_agents_fixture(env: Env) -> None:
    repo = make_repo(env)
    shas = {}
    for index, (transcript, _, _) in enumerate(PROMPT_WORDS):
        shas[transcript.agent] = commit(
            repo, f"change {index}", {f"f{index}.txt": "x\n"}, link(env, transcript, 1, _lines(transcript))
        )
    assert _reindex(env, repo) > 0
    for transcript, word, line in PROMPT_WORDS:
        hits = search(word, repo=repo.path, paths=paths_for(env), limit=50)
        mine = [hit for hit in hits if hit.agent == transcript.agent and hit.turn == line]
        assert mine, (transcript.agent, word, hits)
        (hit,) = mine
        assert hit.commit == shas[transcript.agent] and hit.session == transcript.session
        assert hit.url.startswith("file://") and hit.url.endswith(Path(transcript.relpath).name)
        assert word in search_mod.plain(hit.snippet).lower()
        assert (word, True) in [(text.lower(), match) for text, match in search_mod.parts(hit.snippet)]


def test_a_hit_names_the_commit_whose_slice_holds_the_turn(env: Env) -> None:
    """Two commits from one session: each turn is found under the commit whose note range holds it."""
    repo = make_repo(env)
    first = commit(repo, "add text.py", {"text.py": "1\n"}, link(env, CODEX, 1, 16))
    second = commit(repo, "move to slug.py", {"slug.py": "2\n"}, link(env, CODEX, 17, 25))
    _reindex(env, repo)
    by_turn = {hit.turn: hit.commit for hit in search("slug", repo=repo.path, paths=paths_for(env), limit=100)}
    assert by_turn[6] == first and by_turn[18] == second
    assert all(commit_sha == (first if turn <= 16 else second) for turn, commit_sha in by_turn.items())


def test_a_planted_secret_is_never_found_nor_stored(env: Env) -> None:
    """The store's copy holds a secret (redaction off on the committing machine, or a rule added
    since): the reindex redacts again, so the index never holds it, in any of its files."""
    secret = _secret()
    _store_copy(env, CLAUDE, "In this repo, add", f"In this repo with token {secret}, add")
    repo = make_repo(env)
    commit(repo, "farewell", {"src/app.py": "x\n"}, link(env, CLAUDE, 1, _lines(CLAUDE)))
    paths = paths_for(env)
    _reindex(env, repo, paths)
    assert search("farewell", repo=repo.path, paths=paths)  # the prompt is indexed
    for query in (f'"{secret}"', f'"{secret[4:]}"', f"{secret[4:10]}*"):
        assert search(query, repo=repo.path, paths=paths) == [], query
    files = list(paths.state_dir.glob("search.sqlite3*"))
    assert files
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data and secret[4:].encode() not in data, path
        assert secret[4:].lower().encode() not in data, path  # nor the tokenizer's folded form


def test_a_tombstoned_session_is_not_indexed(env: Env) -> None:
    repo = make_repo(env)
    live = link(env, CLAUDE, 1, _lines(CLAUDE))
    sha = commit(repo, "farewell", {"src/app.py": "x\n"}, live)
    note = repo.path.parent / "stone"
    stone = {"agent": "claude", "at": "2026-12-01T00:00:00Z", "by": "t", "session": CLAUDE.session, "url": live.url}
    note.write_text("hf-trace-forgotten: " + json.dumps(stone, sort_keys=True, separators=(",", ":")) + "\n")
    repo.git("notes", f"--ref={REF}", "append", "-F", str(note), sha)
    _reindex(env, repo)
    assert search("farewell", repo=repo.path, paths=paths_for(env)) == []


def test_a_malformed_query_is_a_usage_error(env: Env) -> None:
    repo = make_repo(env)
    commit(repo, "farewell", {"src/app.py": "x\n"}, link(env, CLAUDE, 1, _lines(CLAUDE)))
    _reindex(env, repo)
    for query in ('"unbalanced', "farewell AND", "(", "  "):
        with pytest.raises(SearchQueryError) as info:
            search(query, repo=repo.path, paths=paths_for(env))
        assert info.value.exit_code == 2
        assert "\n" not in str(info.value)


def test_a_repository_never_indexed_says_how_to_build_it(env: Env) -> None:
    repo = make_repo(env)
    commit(repo, "farewell", {"src/app.py": "x\n"}, link(env, CLAUDE, 1, _lines(CLAUDE)))
    with pytest.raises(NotIndexed):
        search("farewell", repo=repo.path, paths=paths_for(env))


# --- the command --------------------------------------------------------------------------------


def _cli_repo(env: Env) -> tuple[Repo, str]:
    repo = make_repo(env)
    sha = commit(repo, "farewell", {"src/app.py": "x\n"}, link(env, CLAUDE, 1, _lines(CLAUDE)))
    return repo, sha


def test_cli_reindex_then_search_prints_ranked_hits_and_json(env: Env) -> None:
    repo, sha = _cli_repo(env)
    out = env.cli("-C", str(repo.path), "search", "--reindex").stdout
    assert "indexed" in out
    text = env.cli("-C", str(repo.path), "search", "farewell").stdout
    assert sha[:12] in text and "claude" in text and CLAUDE.session in text and "turn 1" in text
    data = json.loads(env.cli("-C", str(repo.path), "search", "farewell", "--json", "--limit", "2").stdout)
    assert 1 <= len(data["results"]) <= 2
    first = data["results"][0]
    assert set(first) == {"commit", "agent", "session", "turn", "snippet", "url"}
    assert first["commit"] == sha and first["agent"] == "claude" and isinstance(first["turn"], int)
    assert "farewell" in first["snippet"] and search_mod.MARK_START not in first["snippet"]
    assert first["url"].startswith("file://")


def test_cli_malformed_query_is_one_line_and_exit_2(env: Env) -> None:
    repo, _ = _cli_repo(env)
    env.cli("-C", str(repo.path), "search", "--reindex")
    proc = env.cli("-C", str(repo.path), "search", '"unbalanced', check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: bad search query") and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("Error:")]) == 1


def test_cli_without_an_index_says_to_reindex(env: Env) -> None:
    repo, _ = _cli_repo(env)
    proc = env.cli("-C", str(repo.path), "search", "farewell", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "search --reindex" in proc.stderr


def test_cli_escapes_control_characters_and_markup_in_snippets(env: Env) -> None:
    hostile = "farewell \x1b]0;pwned\x07 [red]not red[/red] \u202egnp \ue000fake\ue001"
    _store_copy(env, CLAUDE, "In this repo, add", json.dumps(hostile)[1:-1] + " add")
    repo, _ = _cli_repo(env)
    env.cli("-C", str(repo.path), "search", "--reindex")
    env.vars["COLUMNS"] = "400"
    out = env.cli("-C", str(repo.path), "search", "pwned").stdout
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out, out
    assert "\\x1b]0;" in out and "\\x07" in out and "[red]not red[/red]" in out and "\\u202egnp" in out, out
    data = json.loads(env.cli("-C", str(repo.path), "search", "fake", "--json").stdout)
    # A transcript's own private-use "marks" are not the index's: they never reach a snippet.
    assert data["results"] and all("\ue000" not in r["snippet"] for r in data["results"])


# --- the daemon keeps the index ------------------------------------------------------------------


def test_the_daemon_indexes_what_it_uploaded_and_never_a_secret(env: Env) -> None:
    secret = _secret()
    repo = make_repo(env).install()
    transcript = env.transcript(f"rollout-2026-11-25T09-00-00-{UUID_A}.jsonl")
    source = (FIXTURES / CODEX.relpath).read_text()
    transcript.write_text(source.replace("add a slugify(title) helper", f"add a slugify(title) helper {secret}", 1))
    repo.activate(transcript)
    with running_daemon(env) as daemon:
        sha = repo.commit("slugify")
        wait_for(lambda: repo.note(sha), what="the note")
        hits = wait_for(lambda: _quiet_search(env, repo, "slugify"), what="the daemon to index the session", timeout=30)
        assert {hit["commit"] for hit in hits} == {sha}
        assert {hit["agent"] for hit in hits} == {"codex"}
        assert any(hit["turn"] == 6 for hit in hits)
        for query in (f'"{secret}"', f'"{secret[4:]}"'):
            proc = env.cli("-C", str(repo.path), "search", query, "--json")
            assert json.loads(proc.stdout) == {"results": []}, query
        assert "--reindex` rebuilds it" not in daemon.output()  # no indexing failure was logged
    files = list(env.state.glob("search.sqlite3*"))
    assert files
    for path in files:
        assert secret[4:].encode() not in path.read_bytes() and secret[4:].lower().encode() not in path.read_bytes()


def _quiet_search(env: Env, repo: Repo, query: str) -> list[dict[str, object]]:
    proc = env.cli("-C", str(repo.path), "search", query, "--json", check=False)
    if proc.returncode != 0:
        return []
    results: list[dict[str, object]] = json.loads(proc.stdout)["results"]
    return results


def test_a_forgotten_session_is_no_longer_found(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript(f"rollout-2026-11-25T09-00-00-{UUID_A}.jsonl")
    transcript.write_text((FIXTURES / CODEX.relpath).read_text())
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit("slugify")
        wait_for(lambda: repo.note(sha), what="the note")
        wait_for(lambda: _quiet_search(env, repo, "slugify"), what="the daemon to index the session", timeout=30)
        env.cli("-C", str(repo.path), "forget", UUID_A, "--yes", "--force")
        proc = env.cli("-C", str(repo.path), "search", "slugify", "--json")
        assert json.loads(proc.stdout) == {"results": []}
    # The rows are gone from the index itself, not only filtered out while the queue remembers.
    with search_mod.searchindex.connection(env.state / "search.sqlite3", readonly=True) as conn:
        assert conn is not None
        assert conn.execute("SELECT COUNT(*) FROM docs").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM turns_fts WHERE turns_fts MATCH 'slugify'").fetchone() == (0,)
    for path in env.state.glob("search.sqlite3*"):
        assert b"slugify" not in path.read_bytes(), path  # nor its words, in any page of the files


def test_indexing_commit_by_commit_as_the_daemon_does_equals_a_reindex(env: Env) -> None:
    """The daemon indexes each commit's new lines from the redacted bytes it uploads (with their
    line offsets); a clone rebuilds from the store in one go. Both must hold the same rows, or
    the teammate's answers would differ from the committer's."""

    from tracekeeperd import searchindex

    repo = make_repo(env)
    slices = [(1, 10), (11, 16), (17, 25)]
    links = []
    shas = []
    for index, (first, last) in enumerate(slices):
        links.append(link(env, CODEX, first, last))
        shas.append(commit(repo, f"step {index}", {f"s{index}.txt": "x\n"}, links[-1]))
    key = search_mod.repo_key(repo.path)[1]
    redactor = redact.from_settings(RedactionSettings())
    raw = (env.root / "store" / CODEX.agent / Path(CODEX.relpath).name).read_bytes()
    daemon_paths = Paths(env.root / "d-run", env.root / "d-state", env.root / "d-config", env.root / "d-data")
    with searchindex.connection(daemon_paths.search_db) as conn:
        assert conn is not None
        for sha, trace in zip(shas, links, strict=True):
            data = redactor.redact_bytes(raw[: trace.bytes])[0]  # what the worker uploads
            index_bytes(
                conn,
                data,
                searchindex.Link(key, sha, trace.first_line, trace.last_line),
                url=trace.url,
                agent=CODEX.agent,
                session=CODEX.session,
                source_id="the daemon's copy",  # one copy, grown: each call resumes at docs.offset
            )
        assert conn.execute("SELECT lines, offset FROM docs").fetchall() == [(slices[-1][1], len(data))]
    clone_paths = paths_for(env)
    _reindex(env, repo, clone_paths)
    for query in ("slug", "text", "readme OR patch", "digits"):
        committer = search(query, repo=repo.path, paths=daemon_paths, limit=100)
        assert committer, query
        assert search(query, repo=repo.path, paths=clone_paths, limit=100) == committer, query


def test_an_amended_commit_is_found_under_its_new_sha(env: Env) -> None:
    """post-rewrite gives the rewritten commit the session's link (queue.retarget, then a note like
    any other), with no session active any more; the index follows it to the new sha."""
    repo = make_repo(env).install()
    transcript = env.transcript(f"rollout-2026-11-25T09-00-00-{UUID_A}.jsonl")
    transcript.write_text((FIXTURES / CODEX.relpath).read_text())
    active = repo.activate(transcript)
    with running_daemon(env):
        old = repo.commit("slugify")
        wait_for(lambda: repo.note(old), what="the note")
        wait_for(lambda: _quiet_search(env, repo, "slugify"), what="the daemon to index the session", timeout=30)
        active.unlink()  # no session active now: only the rewrite's copy links the amended commit
        repo.git("commit", "-q", "--amend", "-m", "slugify, amended")
        new = repo.git("rev-parse", "HEAD")
        wait_for(lambda: repo.note(new), what="the amended commit's note")
        hits = wait_for(
            lambda: [h for h in _quiet_search(env, repo, "slugify") if h["commit"] == new],
            what="the amended commit in the index",
            timeout=30,
        )
        assert {hit["turn"] for hit in hits} >= {6}


def test_a_session_that_does_not_match_its_note_is_left_out_and_said(env: Env) -> None:
    """A store object changed since the note (sha256 differs) is not indexed; the others are, and
    the reindex says which session was left out (one line, exit 1 from the command)."""
    repo = make_repo(env)
    commit(repo, "farewell", {"a.txt": "x\n"}, link(env, CLAUDE, 1, _lines(CLAUDE)))
    commit(repo, "slugify", {"b.txt": "x\n"}, link(env, CODEX, 1, _lines(CODEX)))
    store = env.root / "store" / CLAUDE.agent / Path(CLAUDE.relpath).name
    store.write_text(store.read_text().replace("farewell", "farewelL", 1))
    with pytest.raises(ReindexIncomplete) as info:
        _reindex(env, repo)
    assert CLAUDE.session in str(info.value) and "sha256" in str(info.value) and "\n" not in str(info.value)
    assert search("slugify", repo=repo.path, paths=paths_for(env))
    assert search("farewell", repo=repo.path, paths=paths_for(env)) == []


def test_a_session_forgotten_here_is_not_returned_by_an_index_that_still_holds_it(env: Env) -> None:
    """`forget` without a daemon records the session in the queue only; search honours that."""
    from tracekeeperd.queue import Queue

    repo = make_repo(env)
    commit(repo, "farewell", {"a.txt": "x\n"}, link(env, CLAUDE, 1, _lines(CLAUDE)))
    commit(repo, "farewell too", {"b.txt": "x\n"}, link(env, PI, 1, _lines(PI)))
    paths = paths_for(env)
    _reindex(env, repo, paths)
    assert {hit.agent for hit in search("farewell", repo=repo.path, paths=paths, limit=50)} == {"claude", "pi"}
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    queue = Queue(paths.db)
    try:
        queue.forget(CLAUDE.agent, CLAUDE.session, 1.0)
    finally:
        queue.close()
    assert {hit.agent for hit in search("farewell", repo=repo.path, paths=paths, limit=50)} == {"pi"}
    assert {hit.agent for hit in search("farewell", repo=None, all_repos=True, paths=paths, limit=50)} == {"pi"}


def test_a_session_redacted_anew_under_the_same_url_is_indexed_anew(env: Env) -> None:
    """The daemon's redacted copy is rewritten from byte 0 when the rules change or the session's
    snapshot is a new one (same URL: the store path is per session). The index must then not resume
    at the old copy's `docs.offset` (other bytes there: a line cut in two, indexed as a turn) nor
    keep the old copy's text (under the new rules some of it is a secret)."""

    from tracekeeperd import searchindex

    repo = make_repo(env)
    key = search_mod.repo_key(repo.path)[1]
    word = "zanzibarword"
    acme = "acme_0123456789abcdef"
    raw = (FIXTURES / CODEX.relpath).read_bytes()
    lines = raw.splitlines(keepends=True)
    # A secret only the new rules know in line 6 (the first prompt), a rare word in line 18 (the second).
    lines[5] = lines[5].replace(b"add a slugify(title) helper", f"add a slugify(title) helper {acme}".encode(), 1)
    lines[17] = lines[17].replace(b"move it to slug.py", f"move it to slug.py {word}".encode(), 1)
    assert acme.encode() in lines[5] and word.encode() in lines[17]
    data = b"".join(lines)
    old = redact.from_settings(RedactionSettings()).redact_bytes(data)[0]
    rule = redact.Rule(id="acme-key", pattern=r"acme_[0-9a-f]{16}", keywords=("acme_",))
    new = redact.Redactor(redact.RedactionConfig(extra_rules=(rule,))).redact_bytes(data)[0]
    assert len(old) != len(new) and acme.encode() not in new
    url = "file:///store/codex/session.jsonl"
    with searchindex.connection(env.root / "search.sqlite3") as conn:
        assert conn is not None
        for sha, source, ident, last in (("a" * 40, old, "copy-1", 10), ("b" * 40, new, "copy-2", len(lines))):
            index_bytes(
                conn,
                source,
                searchindex.Link(key, sha, 1, last),
                url=url,
                agent=CODEX.agent,
                session=CODEX.session,
                source_id=ident,
            )
        fresh = env.root / "fresh.sqlite3"
        with searchindex.connection(fresh) as expected:
            assert expected is not None
            index_bytes(
                expected,
                new,
                searchindex.Link(key, "b" * 40, 1, len(lines)),
                url=url,
                agent=CODEX.agent,
                session=CODEX.session,
                source_id="copy-2",
            )
            rows = "SELECT t.line, t.kind, f.text FROM turns t JOIN turns_fts f ON f.rowid = t.id ORDER BY t.line"
            assert conn.execute(rows).fetchall() == expected.execute(rows).fetchall()
        assert conn.execute("SELECT COUNT(*) FROM turns_fts WHERE turns_fts MATCH ?", (f'"{acme}"',)).fetchone() == (0,)
        hits = searchindex.query(conn, word, repos=[key], limit=10, offset=0)
        assert [hit.line for hit in hits] == [18]


def test_an_index_made_before_docs_had_offset_and_source_is_read_again_from_line_1(env: Env) -> None:
    """An index file written before `docs.offset`/`docs.source` existed gets the columns, and its
    sessions are indexed anew from line 1 (their rows name no offset to resume at)."""
    import sqlite3

    from tracekeeperd import searchindex

    path = env.root / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE, agent TEXT NOT NULL,"
        " session TEXT NOT NULL, lines INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO docs (url, agent, session, lines) VALUES ('u', 'codex', 's', 12);"
    )
    old.commit()
    old.close()
    data = (FIXTURES / CODEX.relpath).read_bytes()
    with searchindex.connection(path) as conn:
        assert conn is not None
        columns = {row[1] for row in conn.execute("PRAGMA table_info(docs)")}
        assert {"offset", "source"} <= columns
        index_bytes(
            conn,
            data,
            searchindex.Link("/repo", "a" * 40, 1, _lines(CODEX)),
            url="u",
            agent=CODEX.agent,
            session="s",
            source_id="copy",
        )
        lines = [row[0] for row in conn.execute("SELECT line FROM turns ORDER BY line")]
        assert lines[0] == 6 and lines[-1] == 24  # from the first prompt, not from line 13
        assert conn.execute("SELECT lines, offset, source FROM docs").fetchall() == [(25, len(data), "copy")]


def test_a_note_naming_a_file_outside_the_configured_store_is_neither_indexed_nor_explained(env: Env) -> None:
    """A teammate's note whose URL names a transcript-shaped file elsewhere on this machine
    (matching the note's sha256): `search --reindex` and `why` say which URL and why in one
    line, and nothing of that file reaches the index or the answer."""
    repo = make_repo(env)
    planted = link(env, CLAUDE, 1, _lines(CLAUDE))  # in the configured store; then moved out of it
    private = env.home / "private" / Path(CLAUDE.relpath).name
    private.parent.mkdir()
    Path(planted.url.removeprefix("file://")).rename(private)
    hostile = replace(planted, url=private.as_uri())
    commit(repo, "farewell", {"src/app.py": FAREWELL}, hostile)
    with pytest.raises(ReindexIncomplete) as info:
        _reindex(env, repo)
    message = str(info.value)
    assert "\n" not in message and f"{private.as_uri()} is outside the configured local store" in message, message
    assert search("farewell", repo=repo.path, paths=paths_for(env)) == []
    answer = why(repo.path, "src/app.py", None, paths_for(env), REF)
    (session,) = [s for c in answer.commits for s in c.sessions]
    assert session.prompt is None and not session.edits and session.error is not None
    assert f"{private.as_uri()} is outside the configured local store" in session.error


def test_ranking_a_bounded_candidate_set_gives_the_exhaustive_ranking(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """searchindex.query ranks with FTS5's `ORDER BY rank LIMIT n` and joins only those n: with n
    as small as the page (grown while too few survive the filters or the worst candidate's rank
    ties with what was left out), every page equals ranking every match."""
    from tracekeeperd import searchindex

    repo = make_repo(env)
    for index, (transcript, _, _) in enumerate(PROMPT_WORDS):
        commit(repo, f"change {index}", {f"f{index}.txt": "x\n"}, link(env, transcript, 1, _lines(transcript)))
    _reindex(env, repo)
    with searchindex.connection(paths_for(env).search_db, readonly=True) as conn:
        assert conn is not None
        forgotten = [(CLAUDE.agent, CLAUDE.session), (CODEX.agent, CODEX.session)]

        def pages(candidates: int, text: str, exclude: list[tuple[str, str]]) -> list[list[searchindex.Row]]:
            monkeypatch.setattr(searchindex, "CANDIDATES", candidates)
            monkeypatch.setattr(searchindex, "CANDIDATES_PER_RESULT", 1 if candidates == 1 else 4)
            return [
                searchindex.query(conn, text, repos=None, limit=limit, offset=offset, exclude=exclude)
                for limit, offset in ((1, 0), (3, 2), (10, 0), (500, 0))
            ]

        for text in ("the", "file OR test", "add*"):
            for exclude in ([], forgotten):
                every = pages(10**9, text, exclude)
                assert len(every[3]) > 5, text  # common enough that the pages are real cuts
                assert every[1] == every[3][2:5] and every[0] == every[3][:1]
                assert pages(1, text, exclude) == every, (text, exclude)
        assert not {(row.agent, row.session) for row in pages(1, "the", forgotten)[3]} & set(forgotten)


def test_indexer_add_after_stop_closes_the_source_it_took_over(tmp_path: Path) -> None:
    """`add` takes the source over; once the daemon is stopping nothing will read it, so it closes it."""
    from tracekeeperd.searchindex import Indexer

    indexer = Indexer(tmp_path / "index.db")
    indexer.stop()
    (tmp_path / "t.jsonl").write_bytes(b"{}\n")
    source = (tmp_path / "t.jsonl").open("rb")
    indexer.add(url="file:///x", agent="claude", session="s", source=source, size=3, links=[], source_id="1")
    assert source.closed
