"""Unit tests for `tracekeeperd.config` and `tracekeeperd.paths`: env > config.toml > defaults.

Every test passes its own environment mapping, so nothing depends on the caller's shell.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracekeeperd.config import DEFAULT_HF_ENDPOINT, DEFAULT_NOTES_REF, RetryPolicy, load, normalize_notes_ref
from tracekeeperd.errors import ConfigError
from tracekeeperd.paths import MAX_SOCKET_PATH, resolve


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "TMPDIR": "/tmp", **extra}


def _config_file(home: Path, text: str) -> Path:
    path = home / ".config" / "tracekeeper" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


FULL_FILE = """
store = "file:///from/file"
bucket = "ns/from-file"
notes_ref = "file-notes"
hf_endpoint = "https://hub.example/"
log_level = "DEBUG"

[retry]
base = 1.5
cap = 60
jitter = "0.5"
attempt_timeout = 30
"""


# --- precedence ------------------------------------------------------------------------


def test_defaults(home: Path) -> None:
    config = load(_env(home))
    assert config.store is None
    assert config.bucket is None
    assert config.notes_ref == DEFAULT_NOTES_REF == "refs/notes/hf-traces"
    assert config.hf_endpoint == DEFAULT_HF_ENDPOINT
    assert config.retry == RetryPolicy()
    assert config.log_level == "info"


def test_config_file_over_defaults(home: Path) -> None:
    _config_file(home, FULL_FILE)
    config = load(_env(home))
    assert config.store == "file:///from/file"
    assert config.bucket == "ns/from-file"
    assert config.notes_ref == "refs/notes/file-notes"
    assert config.hf_endpoint == "https://hub.example", "a trailing slash would double up in note URLs"
    assert config.log_level == "debug"
    assert config.retry == RetryPolicy(base=1.5, cap=60.0, jitter=0.5, attempt_timeout=30.0)


def test_environment_over_config_file(home: Path) -> None:
    _config_file(home, FULL_FILE)
    config = load(
        _env(
            home,
            TRACEKEEPER_STORE="hf://buckets/ns/from-env",
            HF_TRACE_BUCKET="ns/env-bucket",
            HF_TRACE_NOTES_REF="env-notes",
            HF_ENDPOINT="http://127.0.0.1:9999/",
            TRACEKEEPER_LOG_LEVEL="WARNING",
            TRACEKEEPER_RETRY_BASE="0.2",
            TRACEKEEPER_RETRY_CAP="1",
            TRACEKEEPER_RETRY_JITTER="0",
            TRACEKEEPER_ATTEMPT_TIMEOUT="7.5",
        )
    )
    assert config.store == "hf://buckets/ns/from-env"
    assert config.bucket == "ns/env-bucket"
    assert config.notes_ref == "refs/notes/env-notes"
    assert config.hf_endpoint == "http://127.0.0.1:9999"
    assert config.log_level == "warning"
    assert config.retry == RetryPolicy(base=0.2, cap=1.0, jitter=0.0, attempt_timeout=7.5)


def test_an_empty_environment_variable_falls_back_to_the_file(home: Path) -> None:
    _config_file(home, FULL_FILE)
    assert load(_env(home, HF_TRACE_BUCKET="", TRACEKEEPER_RETRY_BASE="")).bucket == "ns/from-file"
    assert load(_env(home, TRACEKEEPER_RETRY_BASE="")).retry.base == 1.5


def test_partial_retry_table_keeps_other_defaults(home: Path) -> None:
    _config_file(home, "[retry]\ncap = 10\n")
    assert load(_env(home)).retry == RetryPolicy(cap=10.0)


# --- notes ref -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ref"),
    [
        ("foo", "refs/notes/foo"),
        ("  foo ", "refs/notes/foo"),
        ("refs/notes/foo", "refs/notes/foo"),
        ("a/b", "refs/notes/a/b"),
        # What `git notes --ref` itself does with these (expand_notes_ref in git's notes.c):
        ("notes/foo", "refs/notes/foo"),
        ("refs/heads/main", "refs/notes/refs/heads/main"),
    ],
)
def test_notes_ref_is_expanded_like_git_does(raw: str, ref: str) -> None:
    assert normalize_notes_ref(raw) == ref


def test_notes_ref_from_the_recipe_variable(home: Path) -> None:
    assert load(_env(home, HF_TRACE_NOTES_REF="foo")).notes_ref == "refs/notes/foo"


def test_blank_notes_ref_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not be empty"):
        normalize_notes_ref("   ")


# --- bad values ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "-inf", "1e999"])
def test_bad_numbers_in_the_environment(home: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"retry\.base"):
        load(_env(home, TRACEKEEPER_RETRY_BASE=value))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[retry]\nbase = 'soon'\n", "retry.base must be a number"),
        ("[retry]\ncap = -5\n", "retry.cap must not be negative"),
        ("[retry]\njitter = nan\n", "retry.jitter"),
        ("[retry]\nattempt_timeout = inf\n", "retry.attempt_timeout"),
        ("[retry]\nbase = [1]\n", "retry.base"),
        ("retry = 5\n", "[retry] must be a table"),
        ("store = 5\n", "store must be a string"),
        ("bucket = ['a']\n", "bucket must be a string"),
        ("store = \n", "cannot read"),
        ("[[[\n", "cannot read"),
    ],
)
def test_bad_config_files(home: Path, text: str, fragment: str) -> None:
    path = _config_file(home, text)
    with pytest.raises(ConfigError) as info:
        load(_env(home))
    assert fragment in str(info.value)
    if "cannot read" in fragment:
        assert str(path) in str(info.value), "the message says which file to fix"


def test_an_unreadable_config_path_is_a_config_error(home: Path) -> None:
    (home / ".config" / "tracekeeper" / "config.toml").mkdir(parents=True)
    with pytest.raises(ConfigError, match="cannot read"):
        load(_env(home))


# --- paths -----------------------------------------------------------------------------


def test_xdg_variables_are_honoured(tmp_path: Path, home: Path) -> None:
    paths = resolve(
        _env(
            home,
            XDG_RUNTIME_DIR=str(tmp_path / "run"),
            XDG_STATE_HOME=str(tmp_path / "state"),
            XDG_CONFIG_HOME=str(tmp_path / "config"),
            XDG_DATA_HOME=str(tmp_path / "data"),
        )
    )
    assert paths.runtime_dir == tmp_path / "run" / "tracekeeper"
    assert paths.socket == tmp_path / "run" / "tracekeeper" / "sock"
    assert paths.state_dir == tmp_path / "state" / "tracekeeper"
    assert paths.db == tmp_path / "state" / "tracekeeper" / "queue.sqlite3"
    assert paths.spool == tmp_path / "state" / "tracekeeper" / "spool"
    assert paths.config_file == tmp_path / "config" / "tracekeeper" / "config.toml"
    assert paths.default_local_store == tmp_path / "data" / "tracekeeper" / "traces"


def test_config_file_is_found_through_xdg_config_home(tmp_path: Path, home: Path) -> None:
    cfg = tmp_path / "cfg" / "tracekeeper" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('bucket = "ns/xdg"\n')
    assert load(_env(home, XDG_CONFIG_HOME=str(tmp_path / "cfg"))).bucket == "ns/xdg"


def test_relative_xdg_values_are_ignored(home: Path) -> None:
    paths = resolve(
        _env(
            home,
            XDG_RUNTIME_DIR="run",
            XDG_STATE_HOME="state",
            XDG_CONFIG_HOME="./config",
            XDG_DATA_HOME="data",
        )
    )
    assert paths.state_dir == home / ".local" / "state" / "tracekeeper"
    assert paths.config_dir == home / ".config" / "tracekeeper"
    assert paths.data_dir == home / ".local" / "share" / "tracekeeper"
    assert paths.runtime_dir.is_absolute()
    assert paths.runtime_dir.name == f"tracekeeper-{os.getuid()}"


def test_tracekeeper_overrides_win(tmp_path: Path, home: Path) -> None:
    paths = resolve(
        _env(
            home,
            XDG_RUNTIME_DIR=str(tmp_path / "run"),
            XDG_STATE_HOME=str(tmp_path / "state"),
            TRACEKEEPER_RUNTIME_DIR=str(tmp_path / "rt"),
            TRACEKEEPER_STATE_DIR=str(tmp_path / "st"),
        )
    )
    assert paths.runtime_dir == tmp_path / "rt"
    assert paths.state_dir == tmp_path / "st"


@pytest.mark.parametrize("tmpdir", ["/tmp", None, "relative/tmp"])
def test_runtime_fallback_is_short_absolute_and_per_user(home: Path, tmpdir: str | None) -> None:
    env = {"HOME": str(home)}
    if tmpdir is not None:
        env["TMPDIR"] = tmpdir
    runtime = resolve(env).runtime_dir
    assert runtime.is_absolute()
    assert runtime.name == f"tracekeeper-{os.getuid()}"
    assert len(os.fsencode(runtime)) < 60
    assert len(os.fsencode(runtime / "sock")) <= MAX_SOCKET_PATH
