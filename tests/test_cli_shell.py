"""The CLI shell as a user meets it: lazy start-up, global -C/-q/--traceback, one error table.

Every test runs the real `python -m tracekeeper` in a subprocess (harness.Env.cli).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from .harness import Env, make_repo


def _imported(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output (`import time: self | cumulative | name`)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_help_imports_no_subcommand_module(env: Env) -> None:
    env.vars["PYTHONPROFILEIMPORTTIME"] = "1"
    proc = env.cli("--help")
    assert "install    Install the git hooks in this repository." in proc.stdout
    modules = _imported(proc.stderr)
    assert "tracekeeper.cli" in modules  # the measurement works
    for heavy in (
        "tracekeeper.install",
        "tracekeeper.sync",
        "tracekeeper.trail",
        "tracekeeper.cli.status",
        "tracekeeper.cli.jobs",
        "tracekeeper.cli.show",
        "rich",
        "tracekeeperd.queue",
    ):
        assert heavy not in modules, f"--help imported {heavy}"
    # A lazy command still has its own help, importing its module only then.
    sub = env.cli("install", "--help")
    assert "Install tracekeeper's post-commit hook" in sub.stdout
    assert "tracekeeper.install" in _imported(sub.stderr)


def test_lazy_table_matches_the_real_commands() -> None:
    from tracekeeper import cli

    for name, (module, attribute, short_help) in cli.LAZY_COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        assert command.name == name
        assert command.short_help == short_help, name


def test_global_C_runs_the_command_in_that_directory(env: Env) -> None:
    repo = make_repo(env)
    proc = env.cli("-C", str(repo.path), "install")
    assert "post-commit" in proc.stdout
    assert (repo.git_dir / "hooks" / "post-commit").exists()
    # A subcommand's own -C is relative to the global one, as in git.
    env.cli("-C", str(repo.path.parent), "uninstall", "-C", repo.path.name)
    assert not (repo.git_dir / "hooks" / "post-commit").exists()


def test_global_C_with_a_missing_directory_is_one_usage_error(env: Env) -> None:
    missing = env.root / "nope"
    for command in ("status", "install", "log"):
        proc = env.cli("-C", str(missing), command, check=False)
        assert proc.returncode == 2, (command, proc.stderr)
        assert proc.stderr.endswith(f"Error: Invalid value for '-C': Directory '{missing}' does not exist.\n")
        assert "Traceback" not in proc.stderr
        assert proc.stdout == ""


def test_every_commands_own_C_treats_a_missing_directory_alike(env: Env) -> None:
    missing = env.root / "nope"
    for command in ("install", "uninstall", "log", "show", "doctor", "push", "pull", "relink", "forget"):
        args = ("forget", "abc") if command == "forget" else (command,)
        proc = env.cli(*args, "-C", str(missing), check=False)
        assert proc.returncode == 2, (command, proc.stderr)
        assert proc.stderr.endswith(f"Error: Invalid value for '-C': Directory '{missing}' does not exist.\n"), command
        assert proc.stdout == "", command


def test_quiet_keeps_errors_and_drops_notes(env: Env) -> None:
    repo = make_repo(env)
    loud = env.cli("install", "-C", str(repo.path))
    assert loud.stdout.strip()
    quiet = env.cli("-q", "uninstall", "-C", str(repo.path))
    assert quiet.stdout == ""
    assert not (repo.git_dir / "hooks" / "post-commit").exists()
    failed = env.cli("-q", "install", "-C", str(env.root), check=False)
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: ")


def test_a_library_error_is_one_line_and_traceback_shows_the_stack(env: Env) -> None:
    plain = env.cli("install", "-C", str(env.root), check=False)  # not a git repository
    assert plain.returncode == 1
    assert plain.stderr.startswith("Error: ") and plain.stderr.count("\n") == 1, plain.stderr
    for args, extra in ((("--traceback",), {}), ((), {"TRACEKEEPER_DEBUG": "1"})):
        env.vars.update(extra)
        shown = env.cli(*args, "install", "-C", str(env.root), check=False)
        env.vars.pop("TRACEKEEPER_DEBUG", None)
        assert shown.returncode == 1
        assert "Traceback (most recent call last)" in shown.stderr
        assert shown.stderr.endswith(plain.stderr)  # the same last line, after the stack


def test_repeated_agent_keeps_every_value(env: Env) -> None:
    proc = env.cli("agents", "install", "--agent", "codex", "--agent", "gemini")
    named = {line.split(":", 1)[0] for line in proc.stdout.splitlines() if not line.startswith(" ")}
    assert {"codex", "gemini"} <= named, proc.stdout
    assert not named & {"claude", "cursor"}
    gone = env.cli("agents", "uninstall", "--agent", "gemini", "--agent", "codex")
    assert "gemini:" in gone.stdout and "codex:" in gone.stdout
    quiet = env.cli("-q", "agents", "install", "--agent", "gemini")
    assert "gemini:" not in quiet.stdout
    assert "tracekeeper" in (env.home / ".gemini" / "settings.json").read_text()


def test_the_error_table_maps_types_to_documented_codes() -> None:
    from tracekeeper import errors_table
    from tracekeeper.api import DaemonError, DaemonUnavailable
    from tracekeeper.errors import ClientError

    assert errors_table.lookup(DaemonUnavailable("tracekeeperd is not running")) == (
        "tracekeeperd is not running",
        "start it with: tracekeeperd   (or: tracekeeper service install)",
        3,
    )
    assert errors_table.lookup(DaemonError(500, "boom\ntwo"))[:3:2] == ("the daemon answered 500: boom two", 1)
    assert errors_table.lookup(ClientError("x", hint="do y", exit_code=4)) == ("x", "do y", 4)
    missing = FileNotFoundError(2, os.strerror(2), str(Path("/nope")))
    assert errors_table.lookup(missing) == ("/nope: No such file or directory", None, 1)
    assert errors_table.lookup(ValueError("surprise")) is None
    # hf_xet reports a failed transfer as ConnectionError with reqwest's internals in the text.
    leaky = ConnectionError("Request middleware error: error sending request for url (https://cas/...)")
    message, hint, code = errors_table.lookup(leaky) or ("", None, 0)
    assert (message, code) == ("the Hub cannot be reached", 1)  # hub_errors.describe's words
    assert "middleware" not in message and hint and "HF_ENDPOINT" in hint


def test_the_pre_push_entry_shares_the_error_table(env: Env) -> None:
    """`python -m tracekeeper.sync` (what the pre-push hook runs) raises into the same table."""
    proc = subprocess.run(
        [sys.executable, "-m", "tracekeeper.sync", "pull", "-C", str(env.root)],
        env=env.vars,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == f"Error: {env.root} is not in a git repository\n"


#: Modules `why` and `search` must not import on a clone (no daemon state, sessions in the store):
#: the socket client's http.client (email, ssl), the queue, the redactor and the notes writer's
#: retry library are for other commands, or for a machine with local copies to redact.
READ_PATH_NEEDLESS = ("http.client", "ssl", "tenacity", "tracekeeperd.queue", "tracekeeperd.redact", "logging")


@pytest.mark.usefixtures("configured_store")  # the notes' file:// store (tests/test_why_lib.py's links)
def test_why_and_search_import_only_what_they_need(env: Env) -> None:
    from .test_search import _cli_repo

    repo, sha = _cli_repo(env)
    env.cli("-C", str(repo.path), "search", "--reindex")
    env.vars["PYTHONPROFILEIMPORTTIME"] = "1"
    found = env.cli("-C", str(repo.path), "search", "farewell")
    assert sha[:12] in found.stdout  # the measured run did the whole search
    explained = env.cli("-C", str(repo.path), "why", "src/app.py:1")
    assert "farewell" in explained.stdout and "file://" in explained.stdout  # read the session
    for name, proc in (("search", found), ("why", explained)):
        modules = _imported(proc.stderr)
        assert "tracekeeper.cli" in modules  # the measurement works
        loaded = sorted(set(READ_PATH_NEEDLESS) & modules)
        assert not loaded, f"{name} imported {loaded}"
