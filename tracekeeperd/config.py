"""Configuration: environment first, then `config.toml`, read once into a frozen value.

Precedence for every key: environment variable > config file > default. The recipe's
variables (`HF_TRACE_BUCKET`, `HF_TRACE_NOTES_REF`) keep working unchanged.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .paths import Paths, resolve

DEFAULT_NOTES_REF = "refs/notes/hf-traces"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts of one job, persisted as `next_attempt_at`."""

    base: float = 5.0
    cap: float = 900.0
    jitter: float = 3.0
    #: Bound on one upload attempt, so a hung transfer never holds the queue for minutes.
    attempt_timeout: float = 120.0


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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _float(name: str, raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value):
        # nan/inf would reach next_attempt_at: a job never due again, or a retry loop that spins.
        raise ConfigError(f"{name} must be a finite number of seconds, got {raw!r}")
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _redaction(table: object, source: Path) -> RedactionSettings:
    if table is None:
        return RedactionSettings()
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [redaction] must be a table")
    allow = table.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) and a for a in allow):
        raise ConfigError(f"{source}: redaction.allow must be a list of non-empty strings")
    scrub = table.get("scrub_home", False)
    if not isinstance(scrub, bool):
        raise ConfigError(f"{source}: redaction.scrub_home must be true or false")
    rules = []
    raw_rules = table.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{source}: redaction.rules must be a list of tables ([[redaction.rules]])")
    for i, rule in enumerate(raw_rules):
        where = f"{source}: redaction.rules[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError(f"{where} must be a table with id, pattern and keywords")
        rule_id, pattern, keywords = rule.get("id"), rule.get("pattern"), rule.get("keywords", [])
        entropy = rule.get("entropy")
        if not isinstance(rule_id, str) or not rule_id or not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where} needs a string id and pattern")
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise ConfigError(f"{where}: keywords must be a list of strings")
        if entropy is not None and not isinstance(entropy, int | float):
            raise ConfigError(f"{where}: entropy must be a number")
        rules.append((rule_id, pattern, tuple(keywords), float(entropy) if entropy is not None else None))
    return RedactionSettings(allow=tuple(allow), rules=tuple(rules), scrub_home=scrub)


def _roots(env_value: str | None, file_value: object, source: Path) -> tuple[Path, ...]:
    if env_value:
        return tuple(Path(p).expanduser() for p in env_value.split(os.pathsep) if p)
    if file_value is None:
        return ()
    if not isinstance(file_value, list) or not all(isinstance(p, str) for p in file_value):
        raise ConfigError(f"{source}: transcript_roots must be a list of paths")
    return tuple(Path(p).expanduser() for p in file_value)


def normalize_notes_ref(ref: str) -> str:
    """The ref `git notes --ref=<ref>` writes to (git's expand_notes_ref), so status shows the truth."""
    ref = ref.strip()
    if not ref:
        raise ConfigError("the notes ref must not be empty")
    if ref.startswith("refs/notes/"):
        return ref
    return f"refs/{ref}" if ref.startswith("notes/") else f"refs/notes/{ref}"


def load(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    paths = resolve(env)
    file_cfg = _read_toml(paths.config_file)
    retry_cfg = file_cfg.get("retry", {})
    if not isinstance(retry_cfg, dict):
        raise ConfigError(f"{paths.config_file}: [retry] must be a table")

    def pick(env_name: str, key: str) -> str | None:
        value = env.get(env_name) or file_cfg.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{paths.config_file}: {key} must be a string")
        return value or None

    defaults = RetryPolicy()
    retry = RetryPolicy(
        base=_float("retry.base", env.get("TRACEKEEPER_RETRY_BASE") or retry_cfg.get("base", defaults.base)),
        cap=_float("retry.cap", env.get("TRACEKEEPER_RETRY_CAP") or retry_cfg.get("cap", defaults.cap)),
        jitter=_float("retry.jitter", env.get("TRACEKEEPER_RETRY_JITTER") or retry_cfg.get("jitter", defaults.jitter)),
        attempt_timeout=_float(
            "retry.attempt_timeout",
            env.get("TRACEKEEPER_ATTEMPT_TIMEOUT") or retry_cfg.get("attempt_timeout", defaults.attempt_timeout),
        ),
    )
    return Config(
        paths=paths,
        store=pick("TRACEKEEPER_STORE", "store"),
        bucket=pick("HF_TRACE_BUCKET", "bucket"),
        notes_ref=normalize_notes_ref(pick("HF_TRACE_NOTES_REF", "notes_ref") or DEFAULT_NOTES_REF),
        hf_endpoint=(pick("HF_ENDPOINT", "hf_endpoint") or DEFAULT_HF_ENDPOINT).rstrip("/"),
        retry=retry,
        log_level=(pick("TRACEKEEPER_LOG_LEVEL", "log_level") or "info").lower(),
        redaction=_redaction(file_cfg.get("redaction"), paths.config_file),
        follow_debounce=_float(
            "follow_debounce", env.get("TRACEKEEPER_FOLLOW_DEBOUNCE") or file_cfg.get("follow_debounce", 10.0)
        ),
        transcript_roots=_roots(
            env.get("TRACEKEEPER_TRANSCRIPT_ROOTS"), file_cfg.get("transcript_roots"), paths.config_file
        ),
    )
