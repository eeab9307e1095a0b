"""Configuration: environment first, then `config.toml`, read once into a frozen value.

Precedence for every key: environment variable > config file > default. The recipe's
variables (`HF_TRACE_BUCKET`, `HF_TRACE_NOTES_REF`) keep working unchanged.

`load` is the one validator: the daemon (at start and on SIGHUP), every CLI command that reads
the configuration, and `doctor` call it, so all of them agree on what is wrong. It reports every
problem at once, one line each, naming the environment variable or the file and key.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .errors import ConfigError
from .paths import Paths, resolve

DEFAULT_NOTES_REF = "refs/notes/hf-traces"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_KEEP_DONE_DAYS = 30.0

#: Every key config.toml may hold; anything else is a typo that would silently do nothing.
_KEYS = {
    "": (
        "store",
        "bucket",
        "notes_ref",
        "hf_endpoint",
        "log_level",
        "follow_debounce",
        "transcript_roots",
        "keep_done_days",
    ),
    "retry": ("base", "cap", "jitter", "attempt_timeout", "burst"),
    "redaction": ("allow", "rules", "scrub_home"),
    "redaction.rules[]": ("id", "pattern", "keywords", "entropy"),
}
_TABLES = ("retry", "redaction")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts of one job, persisted as `next_attempt_at`."""

    base: float = 5.0
    cap: float = 900.0
    jitter: float = 3.0
    #: Bound on one upload attempt, so a hung transfer never holds the queue for minutes.
    attempt_timeout: float = 120.0
    #: Within one attempt, the first wait before a quick retry of a transient Hub error (then
    #: twice that, each plus up to as much jitter; stores/hf.py `burst_wait`).
    burst: float = 0.5


@dataclass(frozen=True)
class RedactionSettings:
    """The `[redaction]` table: what users may add to the built-in rules (never remove)."""

    allow: tuple[str, ...] = ()
    #: (id, pattern, keywords, entropy) of user rules; compiled (and validated) by the Redactor.
    rules: tuple[tuple[str, str, tuple[str, ...], float | None], ...] = ()
    scrub_home: bool = False


@dataclass(frozen=True)
class Config:
    paths: Paths
    #: `hf://buckets/<ns>/<name>`, `file:///dir`, or None to pick the default at start.
    store: str | None
    #: The recipe's `HF_TRACE_BUCKET` (`ns/name` or just `name`).
    bucket: str | None
    notes_ref: str
    hf_endpoint: str
    retry: RetryPolicy
    log_level: str
    redaction: RedactionSettings = RedactionSettings()
    #: Extra directories transcripts may live in, besides the agents' own (config `transcript_roots`).
    transcript_roots: tuple[Path, ...] = ()
    #: A linked session's remote copy is refreshed once its transcript has been quiet this long.
    follow_debounce: float = 10.0
    #: Days a finished job's row is kept after its snapshot file is gone; None keeps them forever.
    keep_done_days: float | None = DEFAULT_KEEP_DONE_DAYS


class ConfigProblems(ConfigError):
    """Every problem found, one line each (`str` joins them with newlines)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def problems_of(exc: ConfigError) -> list[str]:
    """The lines of a configuration error, for whoever prints one per line."""
    return list(getattr(exc, "problems", None) or str(exc).splitlines() or [""])


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _float(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ConfigError(f"must be a number of seconds, got {raw!r}")
    try:
        value = float(str(raw))
    except ValueError:
        raise ConfigError(f"must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value):
        # nan/inf would reach next_attempt_at: a job never due again, or a retry loop that spins.
        raise ConfigError(f"must be a finite number of seconds, got {raw!r}")
    if value < 0:
        raise ConfigError(f"must not be negative, got {raw!r}")
    return value


def _keep_days(raw: object) -> float | None:
    """A positive number of days, or "forever". Zero is refused rather than read as "delete at
    once" or "never": both readings are plausible, and a wrong guess loses rows or keeps them."""
    if raw == "forever":
        return None
    problem = f'must be a positive number of days or "forever", got {raw!r}'
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ConfigError(problem)
    try:
        value = float(str(raw))
    except ValueError:
        raise ConfigError(problem) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(problem)
    return value


# git's refs.c (check_refname_component, check_or_sanitize_refname; git/git at 1a3e64c6) refuses
# control characters, space, '~', '^', ':', '?', '*', '[', '\\', "..", "@{", a component that
# starts with '.' or ends with ".lock", an empty component, and a trailing '.'.
_REF_BAD_CHAR = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def _ref_problem(ref: str) -> str | None:
    bad = _REF_BAD_CHAR.search(ref)
    if bad:
        return f"contains {bad.group(0)!r}"
    if ".." in ref:
        return "contains '..'"
    if "@{" in ref:
        return "contains '@{'"
    if ref.endswith("."):
        return "ends with '.'"
    for component in ref.split("/"):
        if not component:
            return "has an empty component"
        if component.startswith("."):
            return "a component starts with '.'"
        if component.endswith(".lock"):
            return "a component ends with '.lock'"
    return None


def normalize_notes_ref(ref: str) -> str:
    """The ref `git notes --ref=<ref>` writes to (git's expand_notes_ref in notes.c), refusing what
    git would refuse and a ref outside refs/notes/ (which git would file under refs/notes/refs/)."""
    raw = ref
    ref = ref.strip()
    if not ref:
        raise ConfigError("the notes ref must not be empty")
    if ref.startswith("refs/") and not ref.startswith("refs/notes/"):
        raise ConfigError(f"notes ref {raw!r} is outside refs/notes/, where git keeps notes")
    full = ref if ref.startswith("refs/notes/") else f"refs/{ref}" if ref.startswith("notes/") else f"refs/notes/{ref}"
    if full == "refs/notes/":
        raise ConfigError(f"notes ref {raw!r} names no notes ref under refs/notes/")
    problem = _ref_problem(full)
    if problem:
        raise ConfigError(f"notes ref {raw!r} is not a valid git ref name: it {problem}")
    return full


#: What may not be in a bucket id's parts: huggingface_hub formats the id into the request URL
#: unescaped (hf_api.py `create_bucket`: f"{endpoint}/api/buckets/{namespace}/{name}"), where these
#: would end the path, start a query or fragment, escape a `/`, or step up a level.
_URL_BREAKING = re.compile(r"[\s\x00-\x1f\x7f?#%\\]")


def check_bucket_id(bucket: str) -> str:
    """`ns/name`, or `name` in the token owner's namespace, as huggingface_hub takes them.

    huggingface_hub checks a bucket id only for its shape: `namespace/name` with both parts
    non-empty and no `@` (_buckets.py `_parse_bucket_uri`, utils/_hf_uris.py
    `_parse_bucket_body`), or a bare `name` (hf_api.py `create_bucket` puts it in the "me"
    namespace). It does not apply `validate_repo_id`, the naming rule of Hub repositories, to
    buckets (`validate_hf_hub_args` checks only arguments called repo_id/from_id/to_id), and no
    bucket naming rule is published: whether the Hub takes a name is the Hub's to say, and its
    refusal reaches `status` and `doctor` through the store's preflight. Refused here besides: what
    would send the requests to another URL than the bucket's (see _URL_BREAKING).
    """
    parts = bucket.split("/")
    if (
        not 1 <= len(parts) <= 2
        or not all(parts)
        or "@" in bucket
        or any(part in (".", "..") or _URL_BREAKING.search(part) for part in parts)
    ):
        raise ConfigError(
            f"invalid bucket id {bucket!r}: use <namespace>/<name> (or <name>), without '@', spaces,"
            " control characters, '?', '#', '%' or '\\', and neither part '.' or '..'"
        )
    return bucket


@dataclass(frozen=True)
class StoreSpec:
    """What a store setting names: a bucket (`ns/name`) on the Hub, or a local directory."""

    bucket: str | None = None
    directory: Path | None = None


def parse_store(spec: str) -> StoreSpec:
    """`hf://buckets/<ns>/<name>` or `file:///dir`: the one reading of a store URL, for the
    validator and for stores.open_store alike."""
    if spec.startswith("hf://"):
        rest = spec.removeprefix("hf://")
        if not rest.startswith("buckets/"):
            raise ConfigError(f"invalid bucket id {rest!r}: a store on the Hub is hf://buckets/<namespace>/<name>")
        bucket = rest.removeprefix("buckets/")
        # `hf://buckets/ns/name/` is that bucket; `hf://buckets/ns/` is no bucket at all.
        return StoreSpec(
            bucket=check_bucket_id(bucket[:-1] if bucket.count("/") == 2 and bucket.endswith("/") else bucket)
        )
    if spec.startswith("file://"):
        parsed = urlparse(spec)
        if parsed.netloc not in ("", "localhost") or not unquote(parsed.path).startswith("/"):
            raise ConfigError(f"file store must be a local path, file:///<dir>, got {spec!r}")
        return StoreSpec(directory=Path(unquote(parsed.path)))
    raise ConfigError(f"unknown store {spec!r}: use hf://buckets/<namespace>/<name> or file:///path")


def check_store(spec: str) -> str:
    """`spec` if `parse_store` can read it (the validator keeps the setting as written)."""
    parse_store(spec)
    return spec


def _endpoint(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def _log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ConfigError(f"unknown log level {value!r} (use debug, info, warning or error)")
    return value.lower()


class _Reader:
    """Reads one value at a time, noting a problem (with where it came from) instead of stopping."""

    def __init__(self, env: Mapping[str, str], file_cfg: dict[str, Any], source: Path) -> None:
        self.env = env
        self.file = file_cfg
        self.source = source
        self.problems: list[str] = []

    def note(self, where: str, exc: ConfigError) -> None:
        self.problems.extend(f"{where}: {line}" for line in problems_of(exc))

    def table(self, name: str) -> dict[str, Any]:
        value = self.file.get(name, {})
        if isinstance(value, dict):
            return value
        self.problems.append(f"{self.source}: {name}: must be a table ([{name}])")
        return {}

    def raw(self, env_name: str | None, key: str, table: dict[str, Any] | None = None) -> tuple[object, str]:
        """(value, where): the environment variable if set and not empty, else the file's key
        (`key` is dotted for a key of a table: `retry.cap`)."""
        if env_name and self.env.get(env_name):
            return self.env[env_name], env_name
        source = self.file if table is None else table
        return source.get(key.rsplit(".", 1)[-1]), f"{self.source}: {key}"

    def get(self, env_name: str | None, key: str, check: Any, default: Any, table: dict[str, Any] | None = None) -> Any:
        value, where = self.raw(env_name, key, table)
        if value is None or value == "":
            return default
        try:
            return check(value)
        except ConfigError as exc:
            self.note(where, exc)
            return default

    def unknown_keys(self) -> None:
        def report(known: tuple[str, ...], keys: list[str], prefix: str) -> None:
            for key in keys:
                if key in known:
                    continue
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
                self.problems.append(f"{self.source}: unknown key '{prefix}{key}'{hint}")

        report(_KEYS[""] + _TABLES, list(self.file), "")
        for name in _TABLES:
            table = self.file.get(name)
            if isinstance(table, dict):
                report(_KEYS[name], list(table), f"{name}.")
        rules = self.file.get("redaction", {})
        rules = rules.get("rules") if isinstance(rules, dict) else None
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                report(_KEYS["redaction.rules[]"], list(rule), f"redaction.rules[{i}].")


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError("must be a string")
    return value


def _redaction(reader: _Reader) -> RedactionSettings:
    table = reader.table("redaction")
    if not table:
        return RedactionSettings()
    where = f"{reader.source}: redaction"
    problems_before = len(reader.problems)
    allow = table.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) and a for a in allow):
        reader.problems.append(f"{where}.allow: must be a list of non-empty strings")
        allow = []
    scrub = table.get("scrub_home", False)
    if not isinstance(scrub, bool):
        reader.problems.append(f"{where}.scrub_home: must be true or false")
        scrub = False
    rules = []
    raw_rules = table.get("rules", [])
    if not isinstance(raw_rules, list):
        reader.problems.append(f"{where}.rules: must be a list of tables ([[redaction.rules]])")
        raw_rules = []
    for i, rule in enumerate(raw_rules):
        at = f"{where}.rules[{i}]"
        if not isinstance(rule, dict):
            reader.problems.append(f"{at}: must be a table with id, pattern and keywords")
            continue
        rule_id, pattern, keywords = rule.get("id"), rule.get("pattern"), rule.get("keywords", [])
        entropy = rule.get("entropy")
        if not isinstance(rule_id, str) or not rule_id or not isinstance(pattern, str) or not pattern:
            reader.problems.append(f"{at}: needs a string id and pattern")
        elif not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            reader.problems.append(f"{at}: keywords must be a list of strings")
        elif entropy is not None and (isinstance(entropy, bool) or not isinstance(entropy, int | float)):
            reader.problems.append(f"{at}: entropy must be a number")
        else:
            rules.append((rule_id, pattern, tuple(keywords), float(entropy) if entropy is not None else None))
    settings = RedactionSettings(allow=tuple(allow), rules=tuple(rules), scrub_home=scrub)
    if settings.rules and len(reader.problems) == problems_before:
        # The rules are compiled as the daemon will (redact.py), so a bad pattern is found here.
        from . import redact

        try:
            redact.from_settings(settings)
        except redact.RedactionError as exc:
            reader.problems.append(f"{where}: {exc}")
    return settings


def _roots(reader: _Reader) -> tuple[Path, ...]:
    env_value = reader.env.get("TRACEKEEPER_TRANSCRIPT_ROOTS")
    if env_value:
        return tuple(Path(p).expanduser() for p in env_value.split(os.pathsep) if p)
    file_value = reader.file.get("transcript_roots")
    if file_value is None:
        return ()
    if not isinstance(file_value, list) or not all(isinstance(p, str) for p in file_value):
        reader.problems.append(f"{reader.source}: transcript_roots: must be a list of paths")
        return ()
    return tuple(Path(p).expanduser() for p in file_value)


def load(env: Mapping[str, str] | None = None) -> Config:
    """The configuration, or ConfigProblems naming every problem in it (see the module doc)."""
    env = os.environ if env is None else env
    paths = resolve(env)
    reader = _Reader(env, _read_toml(paths.config_file), paths.config_file)
    reader.unknown_keys()
    retry_table = reader.table("retry")
    defaults = RetryPolicy()

    def seconds(env_name: str, key: str, default: float) -> float:
        value: float = reader.get(env_name, f"retry.{key}", _float, default, retry_table)
        return value

    store = reader.get("TRACEKEEPER_STORE", "store", lambda v: check_store(_string(v)), None)
    bucket = reader.get("HF_TRACE_BUCKET", "bucket", lambda v: check_bucket_id(_string(v)), None)
    notes_ref = reader.get(
        "HF_TRACE_NOTES_REF", "notes_ref", lambda v: normalize_notes_ref(_string(v)), DEFAULT_NOTES_REF
    )
    hf_endpoint = reader.get("HF_ENDPOINT", "hf_endpoint", lambda v: _endpoint(_string(v)), DEFAULT_HF_ENDPOINT)
    log_level = reader.get("TRACEKEEPER_LOG_LEVEL", "log_level", lambda v: _log_level(_string(v)), "info")
    retry = RetryPolicy(
        base=seconds("TRACEKEEPER_RETRY_BASE", "base", defaults.base),
        cap=seconds("TRACEKEEPER_RETRY_CAP", "cap", defaults.cap),
        jitter=seconds("TRACEKEEPER_RETRY_JITTER", "jitter", defaults.jitter),
        attempt_timeout=seconds("TRACEKEEPER_ATTEMPT_TIMEOUT", "attempt_timeout", defaults.attempt_timeout),
        burst=seconds("TRACEKEEPER_RETRY_BURST", "burst", defaults.burst),
    )
    redaction = _redaction(reader)
    follow_debounce = reader.get("TRACEKEEPER_FOLLOW_DEBOUNCE", "follow_debounce", _float, 10.0)
    transcript_roots = _roots(reader)
    keep_done_days = reader.get("TRACEKEEPER_KEEP_DONE_DAYS", "keep_done_days", _keep_days, DEFAULT_KEEP_DONE_DAYS)
    if reader.problems:
        raise ConfigProblems(reader.problems)
    return Config(
        paths=paths,
        store=store,
        bucket=bucket,
        notes_ref=notes_ref,
        hf_endpoint=hf_endpoint,
        retry=retry,
        log_level=log_level,
        redaction=redaction,
        follow_debounce=follow_debounce,
        transcript_roots=transcript_roots,
        keep_done_days=keep_done_days,
    )
