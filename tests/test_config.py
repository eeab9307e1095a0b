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
burst = 0.25
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
    assert config.retry == RetryPolicy(base=1.5, cap=60.0, jitter=0.5, attempt_timeout=30.0, burst=0.25)


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
            TRACEKEEPER_RETRY_BURST="0.05",
        )
    )
    assert config.store == "hf://buckets/ns/from-env"
    assert config.bucket == "ns/env-bucket"
    assert config.notes_ref == "refs/notes/env-notes"
    assert config.hf_endpoint == "http://127.0.0.1:9999"
    assert config.log_level == "warning"
    assert config.retry == RetryPolicy(base=0.2, cap=1.0, jitter=0.0, attempt_timeout=7.5, burst=0.05)


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
    with pytest.raises(ConfigError, match=r"^TRACEKEEPER_RETRY_BASE: must (be a|not be negative)"):
        load(_env(home, TRACEKEEPER_RETRY_BASE=value))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[retry]\nbase = 'soon'\n", "retry.base: must be a number"),
        ("[retry]\ncap = -5\n", "retry.cap: must not be negative"),
        ("[retry]\njitter = nan\n", "retry.jitter"),
        ("[retry]\nattempt_timeout = inf\n", "retry.attempt_timeout"),
        ("[retry]\nbase = [1]\n", "retry.base"),
        ("retry = 5\n", "retry: must be a table"),
        ("store = 5\n", "store: must be a string"),
        ("bucket = ['a']\n", "bucket: must be a string"),
        ("log_level = 3\n", "log_level: must be a string"),
        ("transcript_roots = '/x'\n", "transcript_roots: must be a list of paths"),
        ("[redaction]\nallow = 'x'\n", "redaction.allow: must be a list of non-empty strings"),
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


# --- one validator: every problem, one line each ------------------------------------------


def _problems(home: Path, **extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(_env(home, **extra))
    lines = str(info.value).split("\n")
    assert all(line.strip() == line and line for line in lines)
    return lines


@pytest.mark.parametrize("level", ["verbose", "WARN", "critical", "10"])
def test_an_unknown_log_level_is_refused_from_the_environment(home: Path, level: str) -> None:
    assert _problems(home, TRACEKEEPER_LOG_LEVEL=level) == [
        f"TRACEKEEPER_LOG_LEVEL: unknown log level {level!r} (use debug, info, warning or error)"
    ]


def test_an_unknown_log_level_is_refused_from_the_file(home: Path) -> None:
    path = _config_file(home, 'log_level = "loud"\n')
    assert _problems(home) == [f"{path}: log_level: unknown log level 'loud' (use debug, info, warning or error)"]


def test_unknown_keys_are_named_with_a_suggestion(home: Path) -> None:
    path = _config_file(
        home,
        'bukcet = "ns/x"\ncolour = 1\n[retry]\nbse = 1\n[redaction]\nalow = []\n'
        '[[redaction.rules]]\nid = "r"\npattern = "x"\nkeywords = ["x"]\nentrpy = 3\n',
    )
    assert _problems(home) == [
        f"{path}: unknown key 'bukcet' (did you mean 'bucket'?)",
        f"{path}: unknown key 'colour'",
        f"{path}: unknown key 'retry.bse' (did you mean 'retry.base'?)",
        f"{path}: unknown key 'redaction.alow' (did you mean 'redaction.allow'?)",
        f"{path}: unknown key 'redaction.rules[0].entrpy' (did you mean 'redaction.rules[0].entropy'?)",
    ]


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("refs/heads/main", "is outside refs/notes/"),
        ("refs/tags/v1", "is outside refs/notes/"),
        ("refs/notes/", "names no notes ref"),
        # git's refs.c check_refname_component / check_or_sanitize_refname:
        ("a..b", "contains '..'"),
        ("traces.lock", "a component ends with '.lock'"),
        ("a/.hidden", "a component starts with '.'"),
        ("with space", "contains ' '"),
        ("star*", "contains '*'"),
        ("x@{1}", "contains '@{'"),
        ("trailing.", "ends with '.'"),
        ("a//b", "has an empty component"),
        ("tab\there", "contains '\\t'"),
    ],
)
def test_notes_refs_git_would_refuse_or_put_outside_refs_notes_are_refused(home: Path, ref: str, reason: str) -> None:
    (problem,) = _problems(home, HF_TRACE_NOTES_REF=ref)
    assert problem.startswith(f"HF_TRACE_NOTES_REF: notes ref {ref!r} ")
    assert reason in problem


@pytest.mark.parametrize(
    "bucket",
    # huggingface_hub refuses the first five (_buckets.py _parse_bucket_uri, utils/_hf_uris.py
    # _parse_bucket_body); the others would send the request to another URL than the bucket's.
    ["a/b/c", "ns/", "/name", "ns//name", "ns/a@b", "ns/a#b", "ns/a?b", "a b", "ns/..", "ns/a%2fb", "ns/a\\b"],
)
def test_bucket_ids_huggingface_hub_would_refuse_are_refused(home: Path, bucket: str) -> None:
    (problem,) = _problems(home, HF_TRACE_BUCKET=bucket)
    assert problem.startswith(f"HF_TRACE_BUCKET: invalid bucket id {bucket!r}")
    (problem,) = _problems(home, TRACEKEEPER_STORE=f"hf://buckets/{bucket}")
    assert problem.startswith(f"TRACEKEEPER_STORE: invalid bucket id {bucket!r}")


@pytest.mark.parametrize(
    "bucket",
    # The last ones break the naming rule of Hub *repositories* (huggingface_hub's validate_repo_id),
    # which huggingface_hub does not apply to buckets: whether the Hub takes them is the Hub's to say.
    ["agent-traces", "alice/agent-traces", "Org_1/traces.v2", "a" * 96 + "/b", "ns/a--b", "ns/x.git", "-ns/n"],
)
def test_valid_bucket_ids_are_accepted(home: Path, bucket: str) -> None:
    assert load(_env(home, HF_TRACE_BUCKET=bucket)).bucket == bucket
    assert load(_env(home, TRACEKEEPER_STORE=f"hf://buckets/{bucket}")).store == f"hf://buckets/{bucket}"


@pytest.mark.parametrize(
    ("store", "fragment"),
    [
        ("s3://nope", "unknown store 's3://nope'"),
        ("file://host/dir", "must be a local path"),
        ("file://", "must be a local path"),
        ("hf://models/a/b", "invalid bucket id"),
    ],
)
def test_bad_stores_are_refused(home: Path, store: str, fragment: str) -> None:
    (problem,) = _problems(home, TRACEKEEPER_STORE=store)
    assert problem.startswith("TRACEKEEPER_STORE: ") and fragment in problem


@pytest.mark.parametrize("endpoint", ["huggingface.co", "ftp://hub", "https://", "http:///x"])
def test_a_hub_endpoint_must_be_an_http_url(home: Path, endpoint: str) -> None:
    (problem,) = _problems(home, HF_ENDPOINT=endpoint)
    assert problem == f"HF_ENDPOINT: {endpoint!r} is not an http(s) URL"


def test_every_problem_is_reported_at_once(home: Path) -> None:
    path = _config_file(home, 'notes_ref = "refs/heads/x"\nbucket = "a/b/c"\n[retry]\ncap = -1\n')
    problems = _problems(home, TRACEKEEPER_LOG_LEVEL="chatty", TRACEKEEPER_RETRY_BASE="soon")
    assert [p.split(": ", 2)[:2] for p in problems] == [
        [str(path), "bucket"],
        [str(path), "notes_ref"],
        ["TRACEKEEPER_LOG_LEVEL", "unknown log level 'chatty' (use debug, info, warning or error)"],
        ["TRACEKEEPER_RETRY_BASE", "must be a number of seconds, got 'soon'"],
        [str(path), "retry.cap"],
    ]


def test_a_broken_user_redaction_rule_is_a_configuration_problem(home: Path) -> None:
    path = _config_file(home, '[[redaction.rules]]\nid = "mine"\npattern = "(unclosed"\nkeywords = ["x"]\n')
    (problem,) = _problems(home)
    assert problem.startswith(f"{path}: redaction: redaction rule 'mine': invalid pattern")


# --- retention of done jobs ----------------------------------------------------------------


def test_done_jobs_are_kept_thirty_days_unless_configured(home: Path) -> None:
    assert load(_env(home)).keep_done_days == 30.0
    _config_file(home, "keep_done_days = 7.5\n")
    assert load(_env(home)).keep_done_days == 7.5
    assert load(_env(home, TRACEKEEPER_KEEP_DONE_DAYS="forever")).keep_done_days is None
    _config_file(home, 'keep_done_days = "forever"\n')
    assert load(_env(home)).keep_done_days is None


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan", "inf"])
def test_a_bad_retention_is_refused(home: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"^TRACEKEEPER_KEEP_DONE_DAYS: must be"):
        load(_env(home, TRACEKEEPER_KEEP_DONE_DAYS=value))


def test_a_bad_retention_in_the_file_names_the_key(home: Path) -> None:
    _config_file(home, "keep_done_days = true\n")
    with pytest.raises(ConfigError, match=r"keep_done_days: must be"):
        load(_env(home))
