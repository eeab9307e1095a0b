"""`tracekeeper web` in a real browser: Debian's chromium driven by Playwright, the real CLI serving
a real repository whose notes the real daemon wrote from real fixture transcripts.

One repository serves every test (the daemon runs once, at set-up):
- `greet`: a commit made by hand (no note);
- `farewell`: the real Claude session (opentraces fixture) that adds `farewell()` to src/app.py;
- `hostile` and `long`: a Codex session (the real localpush rollout, then records a hostile tool
  or page could put in a transcript: `<script>`, `<img onerror>`, control characters, a line too
  long for a page, and 450 more messages) made into two commits, so it pages and marks commits.

With TRACEKEEPER_SCREENSHOTS=1 the run writes docs/img/web-{timeline,commit,session,blame}.png,
the pictures docs/viewer.md shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .harness import Env, Repo, make_env, make_repo, running_daemon, wait_for, web_server
from .test_why_lib import CLAUDE, FAREWELL, FIXTURES, GREET

CODEX_FIXTURE = (
    FIXTURES / "codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"
)
CODEX_SESSION = "019c8a70-dda7-7f33-98ea-f30553347322"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "img"
STAMP = "2026-02-23T12:30:00.000Z"
SCRIPT = "<script>window.__pwned = 1; alert('script ran')</script>"
IMG = "<img src=x onerror=\"window.__pwned = 2; alert('img ran')\">"
CONTROL = "bell\x07 escape\x1b[2J bidi\u202egnp.exe del\x7f"
HUGE = "0123456789" * 30_000  # 300 000 characters on one line: more than a page carries
LONG_MESSAGES = 450


def _codex(record_type: str, payload: dict[str, Any]) -> bytes:
    return (json.dumps({"timestamp": STAMP, "type": record_type, "payload": payload}) + "\n").encode()


def hostile_lines() -> bytes:
    call = {"type": "function_call", "name": "shell", "call_id": "call_hostile"}
    return b"".join(
        [
            _codex("event_msg", {"type": "user_message", "message": f"please read this page {SCRIPT}"}),
            _codex("response_item", {**call, "arguments": json.dumps({"command": ["cat", "page.html"]})}),
            _codex(
                "response_item",
                {"type": "function_call_output", "call_id": "call_hostile", "output": f"{IMG}\n{CONTROL}"},
            ),
            _codex(
                "response_item",
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": HUGE}]},
            ),
        ]
    )


def long_lines() -> bytes:
    return b"".join(
        _codex(
            "response_item",
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": f"message {n}"}]},
        )
        for n in range(1, LONG_MESSAGES + 1)
    )


@dataclass
class World:
    env: Env
    repo: Repo
    greet: str
    farewell: str
    hostile: str
    long: str
    codex_lines: int  # lines of the codex transcript at the `long` commit


def _write(repo: Repo, name: str, content: str) -> None:
    target = repo.path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    repo.git("add", name)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    environments = make_env()
    env = next(environments)
    try:
        repo = make_repo(env).install()
        claude = env.home / ".claude" / "projects" / "-workspace-app" / f"{CLAUDE.session}.jsonl"
        claude.parent.mkdir(parents=True)
        shutil.copyfile(FIXTURES / CLAUDE.relpath, claude)
        codex = env.transcript(CODEX_FIXTURE.name)
        with running_daemon(env):
            _write(repo, "src/app.py", GREET)
            repo.git("commit", "-q", "-m", "greet")
            greet = repo.git("rev-parse", "HEAD")
            active = repo.activate(claude, session_id=CLAUDE.session, agent="claude")
            _write(repo, "src/app.py", FAREWELL)
            repo.git("commit", "-q", "-m", "farewell")
            farewell = repo.git("rev-parse", "HEAD")
            wait_for(lambda: repo.note(farewell), what="the farewell note")
            active.unlink()
            codex.write_bytes(CODEX_FIXTURE.read_bytes() + hostile_lines())
            repo.activate(codex, session_id=CODEX_SESSION)
            hostile = repo.commit("hostile", file="notes.txt")
            wait_for(lambda: repo.note(hostile), what="the hostile note")
            with codex.open("ab") as out:
                out.write(long_lines())
            long = repo.commit("long", file="notes.txt")
            wait_for(lambda: repo.note(long), what="the long note")
        lines = codex.read_bytes().count(b"\n")
        yield World(env, repo, greet, farewell, hostile, long, lines)
    finally:
        environments.close()


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[str]:
    with web_server(world.env, world.repo.path) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    page: Any
    base: str
    dialogs: list[str]
    console: list[str]

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        return response


@pytest.fixture
def tab(browser: Any, server: str) -> Iterator[Tab]:
    """A fresh browser context that has visited the printed URL (so it holds the cookie)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    console: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(server)
    assert response is not None and response.status == 200
    base = server.split("/?", 1)[0]
    assert page.url == base + "/", "the token leaves the address bar once traded for the cookie"
    try:
        yield Tab(page, base, dialogs, console)
    finally:
        context.close()


def _cookie(tab: Tab) -> str:
    (cookie,) = tab.page.context.cookies()
    return f"{cookie['name']}={cookie['value']}"


def screenshot(tab: Tab, name: str) -> None:
    if os.environ.get("TRACEKEEPER_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.page.screenshot(path=str(SCREENSHOTS / f"web-{name}.png"), full_page=False)


# --- the token -----------------------------------------------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_every_request_without_the_token_or_its_cookie_is_refused(world: World, server: str) -> None:
    base, token = server.split("/?token=")
    for path in ("/", f"/commit/{world.farewell}", f"/session/claude/{CLAUDE.session}", "/blame/src/app.py"):
        status, headers, body = _get(base + path)
        assert status == 403, path
        assert world.farewell not in body and "farewell" not in body
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert _get(f"{base}/?token={'x' * len(token)}")[0] == 403
    status, headers, _ = _get(server)
    assert status == 302 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token in cookie
    name_value = cookie.split(";", 1)[0]
    status, headers, body = _get(base + "/", {"Cookie": name_value})
    assert status == 200 and "farewell" in body
    csp = headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp, "no script may run, from anywhere"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin" and headers["X-Content-Type-Options"] == "nosniff"
    assert _get(base + "/", {"Cookie": name_value.split("=")[0] + "=wrong"})[0] == 403
    port = base.rsplit(":", 1)[1]
    rebound = _get(base + "/", {"Cookie": name_value, "Host": f"evil.example:{port}"})
    assert rebound[0] == 403, "a page on another host name (DNS rebinding) gets nothing"


# --- the pages -----------------------------------------------------------------------------------


def test_click_through_timeline_commit_session_blame(world: World, tab: Tab) -> None:
    page = tab.page
    rows = page.locator("table.timeline tbody tr")
    assert rows.count() == 4
    assert [row.locator("a.sha").inner_text() for row in rows.all()] == [
        sha[:12] for sha in (world.long, world.hostile, world.farewell, world.greet)
    ]
    farewell_row = page.locator("tr", has=page.locator(f"a.sha:text('{world.farewell[:12]}')"))
    assert "claude" in farewell_row.inner_text()
    assert "farewell" in farewell_row.locator(".prompt").inner_text()  # the first prompt of its slice
    assert "no agent session" in page.locator("tr", has=page.locator(f"a.sha:text('{world.greet[:12]}')")).inner_text()
    screenshot(tab, "timeline")

    farewell_row.locator("a.sha").click()
    page.wait_for_url(f"**/commit/{world.farewell}")
    assert "src/app.py" in page.locator("pre.stat").inner_text()
    part = page.locator("section.session-part")
    assert "verified" in part.locator("p.dim").first.inner_text()
    user = part.locator("li.turn.user").first
    assert "farewell" in user.inner_text()
    assert part.locator("li.turn.assistant").count() >= 1
    edit = part.locator("li.turn.tool", has=page.locator("div.edit")).first
    assert edit.locator("details").get_attribute("open") is None, "tool calls start folded"
    assert "+def farewell(name: str) -> str:" in edit.locator("pre.diff .add").all_inner_texts()
    assert part.locator("a.trace-url").get_attribute("href").startswith("file://")
    screenshot(tab, "commit")

    part.locator("a.full-session").click()
    page.wait_for_url(re.compile(rf".*/session/claude/{CLAUDE.session}\?from=1#L1$"))
    marker = page.locator(f"#made-{world.farewell}")
    assert marker.count() == 1, "the commit the session produced is marked in place"
    marker.locator("a").click()
    page.wait_for_url(f"**/commit/{world.farewell}")

    page.locator("header nav a", has_text="files").click()
    page.locator("ul.files a", has_text="src/app.py").click()
    page.wait_for_url("**/blame/src/app.py")
    line5 = page.locator("#L5")
    assert "def farewell" in line5.inner_text()
    assert page.locator("#L1 a.sha").inner_text() == world.greet[:10]
    assert page.locator("#L1 a.session-link").count() == 0, "a commit made by hand links no session"
    screenshot(tab, "blame")
    farewell_run = page.locator("tr.run", has=page.locator(f"a.sha:text('{world.farewell[:10]}')"))
    farewell_run.locator("a.session-link").click()
    page.wait_for_url(re.compile(rf".*/session/claude/{CLAUDE.session}\?from=\d+#L\d+$"))
    anchor = page.url.rsplit("#", 1)[1]
    assert page.locator(f"#{anchor}").count() == 1, "the link lands on the edit that wrote the line"
    assert not tab.dialogs


def test_a_hostile_transcript_runs_nothing_and_is_shown_as_text(world: World, tab: Tab) -> None:
    page = tab.page
    tab.go(f"/commit/{world.hostile}")
    part = page.locator("section.session-part")
    user = part.locator("li.turn.user", has_text="please read this page")
    assert SCRIPT in user.inner_text(), "the markup is shown as the text it is"
    tool = part.locator("li.turn.tool", has_text="cat").first
    tool.locator("summary").first.click()
    output = tool.locator("div.output").inner_text()
    assert IMG in output
    assert "bell\\x07 escape\\x1b[2J bidi\\u202egnp.exe del\\x7f" in output, "control characters spelled out"
    assert page.locator("main script").count() == 0 and page.locator("main img").count() == 0
    assert page.evaluate("() => document.scripts.length") == 0
    assert page.evaluate("() => window.__pwned === undefined")
    assert not tab.dialogs and not any("ran" in line for line in tab.console)
    html = page.content()
    assert "\x1b" not in html and "\u202e" not in html and "\x07" not in html

    huge = part.locator("li.turn.assistant", has_text="0123456789").first
    shown = huge.locator("pre.text").first.inner_text()
    assert len(shown) < 10_000, "a huge line is cut on the page"
    more = huge.locator("p.more a")
    assert "more characters" in more.inner_text()
    more.click()
    page.wait_for_url(re.compile(r".*/text/\d+$"))
    assert HUGE in page.locator("body").inner_text(), "the whole text, as plain text"
    assert not tab.dialogs


def test_sessions_page_and_mark_the_commits_they_made(world: World, tab: Tab) -> None:
    page = tab.page
    tab.go(f"/session/codex/{CODEX_SESSION}")
    pager = page.locator("nav.pager").first
    assert pager.inner_text().startswith(f"lines 1-200 of {world.codex_lines}")
    assert page.locator(f"#made-{world.hostile}").count() == 1
    assert page.locator("li.turn").count() <= 200
    screenshot(tab, "session")
    seen = 200
    while page.locator("nav.pager a[rel=next]").count():
        page.locator("nav.pager a[rel=next]").first.click()
        page.wait_for_load_state()
        first, last = map(int, re.findall(r"\d+", page.locator("nav.pager").first.inner_text())[:2])
        assert first == seen + 1
        seen = last
    assert seen == world.codex_lines
    assert f"message {LONG_MESSAGES}" in page.locator("ol.conversation").inner_text()
    assert page.locator(f"#made-{world.long}").count() == 1, "the last commit is marked after its last line"
    page.locator("nav.pager a[rel=prev]").first.click()
    page.wait_for_load_state()
    assert f"message {LONG_MESSAGES}" not in page.locator("ol.conversation").inner_text()

    tab.go(f"/commit/{world.long}")
    assert page.locator("section.session-part nav.pager a[rel=next]").count() == 2
    page.locator("section.session-part nav.pager a[rel=next]").first.click()
    page.wait_for_load_state()
    assert "message" in page.locator("ol.conversation").inner_text()
    assert not tab.dialogs


def test_timeline_filters_by_path_author_and_agent(world: World, tab: Tab) -> None:
    page = tab.page
    tab.go("/?agent=claude")
    assert page.locator("table.timeline a.sha").all_inner_texts() == [world.farewell[:12]]
    tab.go("/?path=notes.txt")
    assert page.locator("table.timeline a.sha").all_inner_texts() == [world.long[:12], world.hostile[:12]]
    tab.go("/?author=nobody-by-that-name")
    assert "no commits match these filters" in page.locator("table.timeline").inner_text()
    page.fill("input[name=agent]", "codex")
    page.fill("input[name=author]", "")
    page.click("form.filters button")
    page.wait_for_url("**/?*agent=codex*")
    assert page.locator("table.timeline a.sha").all_inner_texts() == [world.long[:12], world.hostile[:12]]


def test_unknown_pages_say_so_in_one_line(world: World, tab: Tab) -> None:
    response = tab.page.goto(tab.base + "/commit/nope")
    assert response is not None and response.status == 404
    assert "'nope' is not a commit" in tab.page.locator("p.error").inner_text()
    response = tab.page.goto(tab.base + "/session/codex/not-a-session")
    assert response is not None and response.status == 404
    response = tab.page.goto(tab.base + "/?page=x")
    assert response is not None and response.status == 400
    for sneaky in ("/blame/%2e%2e/%2e%2e/etc/passwd", "/blame//etc/passwd"):
        status, _, body = _get(tab.base + sneaky, {"Cookie": _cookie(tab)})
        assert status == 404 and "outside the repository" in body and "root:" not in body, sneaky


# --- the process ---------------------------------------------------------------------------------


def test_ctrl_c_stops_it_and_a_taken_port_is_one_line(world: World) -> None:
    with web_server(world.env, world.repo.path) as (url, proc):
        port = int(url.split(":")[2].split("/")[0])
        taken = world.env.cli("-C", str(world.repo.path), "web", "--no-browser", "--port", str(port), check=False)
        assert taken.returncode != 0 and taken.stdout == ""
        assert taken.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}") and "Traceback" not in taken.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the port is closed"


def test_without_the_stores_copy_it_shows_the_redacted_transcript_checked_against_the_note(world: World) -> None:
    """The store is elsewhere (a Hub bucket; here its local object is moved away): the viewer
    reads the agent's transcript, redacts it as the daemon did, and checks it against the note."""
    (meta,) = [json.loads(line.split(": ", 1)[1]) for line in world.repo.note(world.farewell).splitlines()[1:2]]
    stored = Path(meta["url"].removeprefix("file://"))
    aside = stored.with_name(stored.name + ".aside")
    stored.rename(aside)
    try:
        with web_server(world.env, world.repo.path) as (url, _):
            status, headers, _ = _get(url)
            cookie = headers["Set-Cookie"].split(";", 1)[0]
            status, _, body = _get(f"{url.split('/?')[0]}/commit/{world.farewell}", {"Cookie": cookie})
    finally:
        aside.rename(stored)
    assert status == 200
    assert "read from the transcript" in body and "verified" in body and "differs" not in body
    assert "add a farewell(name: str) helper" in body


def test_the_timeline_pages_and_a_directory_outside_a_repository_is_one_line(world: World) -> None:
    repo = make_repo(world.env, "many")
    for n in range(35):
        repo.git("commit", "-q", "--allow-empty", "-m", f"commit {n}")
    with web_server(world.env, repo.path) as (url, _):
        base = url.split("/?")[0]
        cookie = _get(url)[1]["Set-Cookie"].split(";", 1)[0]
        status, _, first = _get(base + "/", {"Cookie": cookie})
        assert status == 200 and first.count('class="sha"') == 30
        assert "commit 34<" in first and "commit 5<" in first and "commit 4<" not in first
        assert 'rel="next" href="/?page=1' in first
        status, _, second = _get(base + "/?page=1", {"Cookie": cookie})
        assert second.count('class="sha"') == 5 and "commit 4<" in second and 'rel="next"' not in second
    outside = world.env.cli("-C", str(world.env.root), "web", "--no-browser", check=False)
    assert outside.returncode != 0 and outside.stdout == ""
    assert outside.stderr.startswith("Error: ") and outside.stderr.count("\n") == 1, outside.stderr


def test_it_opens_the_browser_with_the_url_unless_told_not_to(world: World) -> None:
    """The user's browser, as Python's webbrowser finds it: $BROWSER names a command (here a
    script that records what it was asked to open)."""
    opened = world.env.root / "opened.txt"
    browser = world.env.root / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {opened}\n')
    browser.chmod(0o755)
    env = Env(world.env.root, {**world.env.vars, "BROWSER": str(browser)})
    with web_server(env, world.repo.path, browser=True) as (url, proc):
        assert wait_for(lambda: opened.exists() and opened.read_text().strip(), what="the browser") == url
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    opened.unlink()
    with web_server(env, world.repo.path):  # --no-browser
        pass
    assert not opened.exists()


def test_token_counts_from_the_notes_and_unknown_where_the_slice_has_none(world: World, tab: Tab) -> None:
    page = tab.page
    farewell = page.locator("tr", has=page.locator(f"a.sha:text('{world.farewell[:12]}')"))
    shown = farewell.locator(".tokens").inner_text()
    assert re.fullmatch(r"tokens [\d,]+ in \([\d,]+ cached\) / [\d,]+ out · claude-\S+", shown), shown
    long = page.locator("tr", has=page.locator(f"a.sha:text('{world.long[:12]}')"))
    assert long.locator(".tokens").inner_text() == "tokens unknown", "no usage records in that slice: no estimate"
    tab.go(f"/commit/{world.farewell}")
    assert re.search(r"tokens [\d,]+ in", page.locator("section.session-part .tokens").inner_text())


def test_search_marks_matches_escapes_them_and_links_into_the_session(world: World, tab: Tab) -> None:
    world.env.cli("-C", str(world.repo.path), "search", "--reindex")
    page = tab.page
    tab.go("/search?q=farewell")
    hits = page.locator("ol.hits li")
    assert hits.count() >= 1
    assert "farewell" in hits.first.locator("mark").first.inner_text().lower()
    hits.first.locator("a").nth(1).click()
    page.wait_for_url(re.compile(rf".*/session/claude/{CLAUDE.session}\?from=\d+#L\d+$"))
    assert page.locator(f"#{page.url.rsplit('#', 1)[1]}").count() == 1, "the link lands on the matching turn"
    tab.go("/search?q=please")
    hostile = page.locator("ol.hits li", has_text="please read this page")
    assert "<script>" in hostile.inner_text() and page.evaluate("() => document.scripts.length") == 0
    response = page.goto(tab.base + '/search?q="unbalanced')
    assert response is not None and response.status == 200
    assert "bad search query" in page.locator("p.error").inner_text()
    assert not tab.dialogs


def test_a_hostile_note_links_nothing_and_runs_nothing(world: World, browser: Any) -> None:
    """Notes travel: whoever can push to the remote writes them. A link whose URL is
    `javascript:` and whose agent and session are markup is shown as text, never as a link."""
    repo = make_repo(world.env, "pushed")
    sha = repo.commit("from a teammate")
    meta = {
        "agent": "<img src=x onerror=alert('agent')>",
        "bytes": 10,
        "lines": [1, 2],
        "session": "<script>alert('session')</script>",
        "sha256": "0" * 64,
        "url": "javascript:alert('url')",
        "v": 1,
    }
    note = f"hf-trace: {meta['url']}\nhf-trace-meta: {json.dumps(meta)}\n"
    repo.git("notes", "--ref=refs/notes/hf-traces", "add", "-m", note, sha)
    with web_server(world.env, repo.path) as (url, _):
        context = browser.new_context()
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        try:
            page.goto(url)
            assert "<img src=x onerror=alert('agent')>" in page.locator("table.timeline").inner_text()
            page.goto(url.split("/?")[0] + f"/commit/{sha}")
            part = page.locator("section.session-part")
            assert "<script>alert('session')</script>" in part.locator("h2").inner_text()
            assert "javascript:alert('url')" in part.inner_text()
            assert page.locator("a[href^='javascript']").count() == 0, "a note's URL is linked only if it is a store's"
            assert page.locator("main img").count() == 0 and page.evaluate("() => document.scripts.length") == 0
            for link in page.locator("main a").all():
                assert not (link.get_attribute("href") or "").lower().startswith(("javascript", "data"))
        finally:
            context.close()
    assert not dialogs
