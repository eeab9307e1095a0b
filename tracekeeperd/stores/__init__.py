"""Where traces go: a private HF bucket, or a local directory when there is no account."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ..config import Config, parse_store
from ..errors import TracekeeperError
from .base import MissingTrace, Store, StoreDenied, StoreInfo, Upload
from .local import LocalStore

if TYPE_CHECKING:
    from .hf import HfStore


def __getattr__(name: str) -> Any:
    """`HfStore` on first use (PEP 562): the hf module brings tenacity and logging, which
    `tracekeeper why`/`show` reading a `file://` store never need."""
    if name == "HfStore":
        from . import hf

        return getattr(hf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HfStore",
    "LocalStore",
    "MissingTrace",
    "NotAStoreURL",
    "Store",
    "StoreDenied",
    "StoreInfo",
    "Upload",
    "configured_local_root",
    "locate",
    "locate_configured",
    "open_store",
]


class NotAStoreURL(TracekeeperError):
    """A note's URL that no store could have written; `bucket` when it names a bucket, badly;
    `refused` when a store could have, but not one this machine is configured to read."""

    def __init__(self, message: str, *, bucket: bool = False, refused: bool = False) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.refused = refused

    @property
    def explains(self) -> bool:
        """Whether the message says more than "no store holds it": then callers show it as is."""
        return self.bucket or self.refused


def _local(url: str, path_text: str, netloc: str, root: Path | None) -> tuple[Store, str]:
    """A `file://` URL as a path in the local store at `root`, or refused.

    A note comes from whoever pushed it: read as given, `file:///home/u/.ssh/id_ed25519` would be
    a read of any file this user can read. So a note's file must lie inside the configured store's
    directory once symlinks and `..` are resolved (LocalStore._target resolves again when reading).
    """
    if root is None:
        raise NotAStoreURL(
            f"{url} is a local file, but this machine's store is not a local directory: refused"
            " (set TRACEKEEPER_STORE to that directory if you trust it)",
            refused=True,
        )
    if netloc not in ("", "localhost"):
        raise NotAStoreURL(f"{url} is a file on another host ({netloc}): refused", refused=True)
    try:
        base = root.expanduser().resolve()
        target = Path(path_text).resolve()
    except (OSError, ValueError) as exc:  # an embedded NUL, a symlink loop
        raise NotAStoreURL(f"{url} is not a usable local path ({exc}): refused", refused=True) from None
    if target == base or not target.is_relative_to(base):
        raise NotAStoreURL(
            f"{url} is outside the configured local store {base}: refused"
            " (set TRACEKEEPER_STORE to that store if you trust it)",
            refused=True,
        )
    return LocalStore(root), target.relative_to(base).as_posix()


def locate(url: str, *, endpoint: str | None = None, local_root: Path | None = None) -> tuple[Store, str]:
    """The store a note's URL points into, and the path in it: what `Store.url` made, undone.

    `file:///dir/name` is a path in `LocalStore(local_root)`, and only there (see `_local`: with no
    `local_root`, no file is read); `<endpoint>/buckets/<ns>/<name>/tree/<path>` (HfStore.url, on
    whatever endpoint wrote it) is that bucket there and `<path>`. A note comes from whoever pushed
    it, and the store will send this user's token to the URL's endpoint: with `endpoint` (the Hub
    this machine is configured for), a URL on any other is refused.
    """
    try:
        parsed = urlparse(url)
    except ValueError as exc:  # urllib.parse's "Invalid IPv6 URL": a lone '[' or ']' in the host
        raise NotAStoreURL(f"no store holds {url} ({exc})") from None
    if parsed.scheme == "file":
        return _local(url, unquote(parsed.path), parsed.netloc, local_root)
    marker = "/buckets/"
    if parsed.scheme in ("http", "https") and marker in parsed.path:
        head, _, rest = parsed.path.partition(marker)
        namespace, name, tree, remote = [*rest.split("/", 3), "", "", ""][:4]
        if tree != "tree" or not remote:
            raise NotAStoreURL(f"not a bucket file URL: {url}", bucket=True)
        where = f"{parsed.scheme}://{parsed.netloc}{head}"
        if endpoint is not None and where.rstrip("/") != endpoint.rstrip("/"):
            raise NotAStoreURL(
                f"{url} is on {where}, not the Hub this machine uses ({endpoint}): not fetched, so your token"
                " is not sent there (set HF_ENDPOINT to that Hub if you trust it)",
                bucket=True,
            )
        from .hf import HfStore

        return HfStore(f"{namespace}/{name}", where), unquote(remote)
    raise NotAStoreURL(f"no store holds {url}")


def locate_configured(url: str, config: Config) -> tuple[Store, str]:
    """`locate` within what this machine is configured for: its Hub, its local store directory."""
    root = configured_local_root(config) if url.startswith("file:") else None
    return locate(url, endpoint=config.hf_endpoint, local_root=root)


def configured_local_root(config: Config) -> Path | None:
    """The directory `open_store` writes to, when it is a local store (by the same rules)."""
    if config.store:
        return parse_store(config.store).directory
    if config.bucket or _has_hf_token():
        return None
    return config.paths.default_local_store


def _has_hf_token() -> bool:
    from .hf import configure_hub

    configure_hub()  # this is the daemon's first import of huggingface_hub: its variables go first
    from huggingface_hub import get_token

    return bool(get_token())


def open_store(config: Config) -> Store:
    """The one store setting: `TRACEKEEPER_STORE` / `store`, then `HF_TRACE_BUCKET`, then defaults.

    With neither set, a saved or exported HF token means `<you>/agent-traces`; no token at all
    means a local directory, so a fresh machine works with no account.
    """
    from .hf import HfStore

    if config.store:
        spec = parse_store(config.store)
        if spec.bucket is not None:
            return HfStore(spec.bucket, config.hf_endpoint, retry=config.retry)
        assert spec.directory is not None
        return LocalStore(spec.directory)
    if config.bucket:  # HF_TRACE_BUCKET: checked by config.check_bucket_id
        return HfStore(config.bucket, config.hf_endpoint, retry=config.retry)
    if _has_hf_token():
        return HfStore(None, config.hf_endpoint, retry=config.retry)
    return LocalStore(config.paths.default_local_store)
