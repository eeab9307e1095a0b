"""A teammate's clone reads the trail: `why` and `search` give the committer's answers.

Machine A commits with a Claude Code session (the real fixture transcript that wrote
`farewell()`), its daemon uploads to a private bucket and notes the commit, and the notes are
pushed. Machine B is another HOME with an empty state dir and no daemon: it clones, runs
`tracekeeper pull`, and reads the same bucket with a token that may read it.

Mocked: only the Hub's REST API (tests/hubstub.py, which answers like the Hub: 401 for no or an
unknown token, 404 `RepoNotFound` for a token that may not see a private bucket); the transfers
are the real huggingface_hub + hf_xet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Env, make_env, make_repo, running_daemon, wait_for
from .hubstub import HubStub, running_hub
from .test_why_lib import CLAUDE, FAREWELL, FIXTURES, GREET

BUCKET = "alice/agent-traces"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubStub]:
    with running_hub(tmp_path / "cas") as stub:
        yield stub


def _json(env: Env, repo: Path, *args: str) -> Any:
    return json.loads(env.cli("-C", str(repo), *args).stdout)


@pytest.fixture
def machines(hub: HubStub, tmp_path: Path) -> Iterator[tuple[Env, Path, Env, Path]]:
    """(A, A's repository, B, B's clone): A committed and pushed, B cloned and pulled."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    for env_a in make_env(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write", HF_TRACE_BUCKET=BUCKET):
        repo = make_repo(env_a).install()
        repo.git("remote", "add", "origin", str(origin))
        repo.commit_files({"src/app.py": GREET}, "greet")
        transcript = env_a.home / ".claude" / "projects" / "-src-app" / f"{CLAUDE.session}.jsonl"
        transcript.parent.mkdir(parents=True)
        shutil.copyfile(FIXTURES / CLAUDE.relpath, transcript)
        repo.activate(transcript, session_id=CLAUDE.session, agent="claude")
        with running_daemon(env_a):
            sha = repo.commit_files({"src/app.py": FAREWELL}, "farewell")
            wait_for(lambda: repo.note(sha), timeout=60, what="machine A's note")  # noqa: B023
            wait_for(
                lambda: env_a.cli("-C", str(repo.path), "search", "farewell", check=False).returncode == 0,  # noqa: B023
                timeout=30,
                what="machine A's daemon to index the session",
            )
            repo.git("push", "-q", "origin", "main")
            env_a.cli("-C", str(repo.path), "push", "origin")
        for env_b in make_env(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_read"):
            clone = env_b.root / "src" / "app"
            clone.parent.mkdir(parents=True)
            subprocess.run(["git", "clone", "-q", "-b", "main", str(origin), str(clone)], check=True, env=env_b.vars)
            env_b.cli("-C", str(clone), "pull")
            assert not env_b.state.exists() or not (env_b.state / "search.sqlite3").exists()
            yield env_a, repo.path, env_b, clone


def test_why_and_search_on_a_clone_answer_as_on_the_committing_machine(
    machines: tuple[Env, Path, Env, Path],
) -> None:
    env_a, repo_a, env_b, clone = machines
    why_a = _json(env_a, repo_a, "why", "src/app.py:5-6", "--json")
    (session,) = why_a["commits"][0]["sessions"]
    assert session["agent"] == "claude" and "farewell" in session["prompt"] and session["edits"]
    assert session["url"].startswith("http") and f"/buckets/{BUCKET}/tree/" in session["url"]
    assert _json(env_b, clone, "why", "src/app.py:5-6", "--json") == why_a

    search_a = _json(env_a, repo_a, "search", "farewell", "--json")
    assert search_a["results"] and {hit["agent"] for hit in search_a["results"]} == {"claude"}
    missing = env_b.cli("-C", str(clone), "search", "farewell", check=False)
    assert missing.returncode == 1 and "search --reindex" in missing.stderr
    env_b.cli("-C", str(clone), "search", "--reindex")
    assert _json(env_b, clone, "search", "farewell", "--json") == search_a
    assert _json(env_b, clone, "search", "goodbye", "--json") == _json(env_a, repo_a, "search", "goodbye", "--json")


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (None, "401"),  # anonymous: the Hub hides a private bucket behind 401 RepoNotFound
        ("hf_unknown_token", "401"),  # "Invalid credentials in Authorization header"
        ("hf_bob_write", "cannot read it"),  # another account: 404 RepoNotFound, as for no bucket
    ],
)
def test_a_token_that_cannot_read_the_bucket_is_one_line_with_what_to_do(
    machines: tuple[Env, Path, Env, Path], token: str | None, status: str
) -> None:
    _, _, env_b, clone = machines
    if token is None:
        env_b.vars.pop("HF_TOKEN")
    else:
        env_b.vars["HF_TOKEN"] = token
    for args in (("why", "src/app.py:5-6"), ("search", "--reindex"), ("show", "HEAD")):
        proc = env_b.cli("-C", str(clone), *args, check=False)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
        hints = [line for line in proc.stderr.splitlines() if line.startswith("hint: ")]
        assert len(errors) == 1 and len(hints) == 1, proc.stderr
        assert BUCKET in errors[0] and status in errors[0], errors[0]
        assert "hf auth login" in hints[0] and BUCKET in hints[0], hints[0]


def test_a_403_on_reading_is_said_the_same_way(machines: tuple[Env, Path, Env, Path], hub: HubStub) -> None:
    """A token the Hub knows but whose permissions do not cover the bucket: 403 (huggingface_hub
    utils/_http.py hf_raise_for_status: "Make sure your token has the correct permissions")."""
    _, _, env_b, clone = machines
    hub.fail_next(1, status=403, paths=[f"/api/buckets/{BUCKET}/paths-info"])
    proc = env_b.cli("-C", str(clone), "search", "--reindex", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"the Hub refused to let this token read the bucket {BUCKET} (403)" in proc.stderr
    assert "hint: log in with an account that can read" in proc.stderr
