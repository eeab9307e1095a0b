"""After `tracekeeper install`, the user is told what is still missing for links to appear."""

from __future__ import annotations

from .harness import Env, make_repo, running_daemon


def test_install_says_to_start_the_daemon_and_hook_the_agents_it_finds(env: Env) -> None:
    (env.home / ".codex").mkdir()  # Codex is on this machine, not hooked yet
    repo = make_repo(env)
    out = env.cli("install", "-C", str(repo.path)).stdout
    assert "next: start the daemon: tracekeeperd" in out
    assert "next: hook OpenAI Codex CLI: tracekeeper agents install" in out


def test_install_with_the_daemon_running_and_agents_hooked_says_so(env: Env) -> None:
    (env.home / ".codex").mkdir()
    env.cli("agents", "install", "--agent", "codex")
    repo = make_repo(env)
    with running_daemon(env):
        out = env.cli("install", "-C", str(repo.path)).stdout
    assert "tracekeeperd is running" in out
    assert "agents hooked: OpenAI Codex CLI" in out


def test_quiet_install_prints_no_next_steps(env: Env) -> None:
    repo = make_repo(env)
    out = env.cli("--quiet", "install", "-C", str(repo.path)).stdout
    assert "next:" not in out
