"""A small, faithful stand-in for the Hugging Face Hub's Storage Bucket REST API and its xet CAS.

Why it exists: tracekeeper talks to the Hub only through the real ``huggingface_hub`` client and
``hf_xet``. Mocking those would test our guesses about them, not them. Instead this module serves the
handful of REST endpoints the real client calls for buckets, and hands out xet tokens whose
``casUrl`` points at a second server in the same process (``XetCas``, 127.0.0.1, its own port) that
speaks the xet CAS HTTP API. hf_xet then runs its ``RemoteClient``, exactly the code a user's upload
runs against the Hub: it chunks, deduplicates and compresses, asks for an upload grant per xorb
(hf_xet 1.8.0), PUTs the xorb to the grant's URL, commits it, uploads the shard through ``/v2/shards``;
downloads ask ``/v2/reconstructions`` and fetch xorb byte ranges with HTTP Range. The CAS checks what
a strict server checks (xet token, grant length and CRC-64/NVME checksum, grant expiry, xorb chunk
structure, shards that name only stored xorbs); see ``XetCas`` for each behaviour and its source.

``HubStub(cas="local")`` (or ``HUBSTUB_CAS=local`` in the environment) hands out ``local://<cas_dir>``
instead, so hf_xet uses its simulation ``LocalClient`` and writes the directory itself. That client
is not what users run (it rebuilds each xorb's footer in memory and writes synchronously: xet-core
xet_client/src/cas_client/simulation/local_client.rs ``upload_xorb``), so its figures are not the
real client's; it is kept to compare with earlier measurements.

What is emulated (verified against huggingface_hub 2.4.0 / hf_xet 1.8.0):

* ``GET /api/whoami-v2``, ``GET /api/agent-harnesses``
* ``POST|GET|DELETE /api/buckets/{ns}/{name}``, ``GET /api/buckets/{ns}``, ``PUT .../settings``
* ``GET .../xet-write-token``, ``GET .../xet-read-token``
* ``POST .../batch`` (NDJSON), ``POST .../paths-info``, ``GET .../tree[/{prefix}]`` (Link pagination)
* ``HEAD /buckets/{ns}/{name}/resolve/{path}``
* the xet CAS (``XetCas``): ``POST /v1/xorb-grants/{prefix}/{hash}``, the grant URL (``PUT``),
  ``POST /v1/xorb-commits/{prefix}/{hash}/grant/{id}``, ``POST /v1/xorbs/{prefix}/{hash}``,
  ``POST /v2/shards`` and ``/v1/shards``, ``GET /v2/reconstructions/{file}`` and ``/v1/...``, the
  fetch URLs (``GET`` with ``Range``), ``GET /v1/chunks/{prefix}/{hash}`` (always 404: no global
  dedup), ``POST /v1/telemetry`` (200, body unread: the path is in hf_xet.abi3.so's strings, its
  body format was not checked). Not served (404): ``/v2/file-chunk-hashes``, which 1.8.0 asks only
  for a file's dirty ranges ("get_file_chunk_hashes requires at least one dirty range"); the
  upload-path tests in tests/test_hubstub.py list every CAS request and it is not among them
* auth like the Hub: an unknown token is rejected everywhere with 401 "Invalid credentials in
  Authorization header"; a private or missing bucket is 401 ``RepoNotFound`` for anonymous callers
  and 404 ``RepoNotFound`` for authenticated ones; a read-only token gets 403 on writes.
* rate limits like the Hub: fixed 5-minute windows per caller and endpoint group ("api" for
  ``/api/...``, "resolvers" for ``.../resolve/...``, "pages" for the rest); every answer carries the
  IETF-draft headers ``RateLimit: "api";r=<remaining>;t=<seconds to reset>`` and ``RateLimit-Policy:
  "fixed window";"api";q=<quota>;w=300``, and a used-up window answers 429 with ``r=0`` and no
  ``Retry-After``. Sources: huggingface/huggingface_hub issue #3553 (the headers as the Hub sends
  them, on every answer) and its tests/test_utils_http.py (``TestRateLimitErrorMessage``, 429s that
  carry only these headers); huggingface_hub ``utils/_http.py`` (``parse_ratelimit_headers``,
  ``http_backoff``, ``hf_raise_for_status``) is what reads them. The quotas are the stand-in's own
  defaults (``RATE_LIMIT_QUOTAS``), not the Hub's, and can be set per test.

File sizes: ``/batch`` carries only the xet hash. The stand-in reads the shard (``*.mdb``) files
stored in the CAS directory (uploaded through ``/v2/shards``, or written by the ``local://``
client), which record every uploaded file's hash and the byte length of each of its segments, so a
size is only known if the bytes were really uploaded. An
``addFile`` whose hash is in no shard is reported in ``failed`` (422 if nothing succeeded), as the
Hub would for content it does not store.

Use it in-process (``HubStub``; it runs its own event loop in a background thread) or standalone::

    python -m tests.hubstub --port 0 --cas /tmp/cas --user alice:hf_alice_write

which prints the endpoint on one line once it is listening. Control endpoints for the standalone
mode live under ``/__stub__/`` (see ``HubStub._control``).

Caveat (``local://`` only): hf_xet's local CAS keeps an exclusive lock while an upload commit or a
download group is open, so only one process may transfer at a time; ``HubStub.read_file`` downloads
in the calling process. Over HTTP there is no such lock.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypedDict, TypeVar
from urllib.parse import quote, unquote, urlencode

from aiohttp import web

# hf_xet reads its retry settings once, when it starts. Unbounded, a transfer against an unreachable
# stand-in blocks in the xet token fetch for minutes; these bounds keep failure tests fast. They are
# defaults only: a caller that sets them explicitly (or a separate process) keeps its own values.
CLIENT_ENV_DEFAULTS: Mapping[str, str] = {
    "HF_XET_CLIENT_RETRY_MAX_ATTEMPTS": "2",
    "HF_XET_CLIENT_RETRY_BASE_DELAY": "100ms",
    "HF_XET_CLIENT_RETRY_MAX_DURATION": "5s",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_XET_TELEMETRY_ENABLED": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
}
for _key, _value in CLIENT_ENV_DEFAULTS.items():
    os.environ.setdefault(_key, _value)

Role = Literal["read", "write"]

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
_ANONYMOUS = ""  # rate-limit key of callers without a token (the Hub counts them by IP)
EMPTY_XET_HASH = "0" * 64  # what hf_xet reports for zero-byte content; it writes no shard entry
TOKEN_TTL_SECONDS = 3600
#: The Hub's rate-limit windows are fixed and 5 minutes long (huggingface_hub issue #3553:
#: ``RateLimit-Policy: "fixed window";"api";q=500;w=300``).
RATE_LIMIT_WINDOW = 300
#: Requests per window and group. The stand-in's own defaults, high enough that no test reaches them
#: by accident; a test that wants a 429 sets a quota or uses ``exhaust_rate_limit``.
RATE_LIMIT_QUOTAS: Mapping[str, int] = {"api": 500, "resolvers": 3000, "pages": 100}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_STARTUP_TIMEOUT = 10.0

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------------


class RequestRecord(NamedTuple):
    """One request the stand-in answered: ``(method, path, status)``; ``path`` is URL-decoded."""

    method: str
    path: str
    status: int


class StubFile(TypedDict):
    """A file as the stand-in stores it (what ``HubStub.files`` returns)."""

    xet_hash: str
    size: int
    mtime: int  # milliseconds since the epoch, as sent by the client
    uploaded_at: float  # seconds since the epoch, stand-in clock
    content_type: str | None


def client_env(endpoint: str, token: str | None, hf_home: Path | str) -> dict[str, str]:
    """Environment for a *separate process* running the real client against a stand-in at ``endpoint``.

    Why: huggingface_hub reads ``HF_ENDPOINT``/``HF_HOME`` at import, so a subprocess must get them
    before it starts; the xet retry bounds keep an unreachable-Hub test from blocking for minutes.
    """
    env = dict(os.environ)
    env.update(CLIENT_ENV_DEFAULTS)
    env["HF_ENDPOINT"] = endpoint
    env["HF_HOME"] = str(hf_home)
    if token is None:
        env.pop("HF_TOKEN", None)
    else:
        env["HF_TOKEN"] = token
    return env


# --------------------------------------------------------------------------------------------------
# Shard parsing: how the stand-in learns file sizes
# --------------------------------------------------------------------------------------------------

_SHARD_TAG_PREFIX = b"HFRepoMetaData\x00"
_SHARD_HEADER_SIZE = 48  # tag[32], version u64, footer_size u64
_SHARD_ENTRY_SIZE = 48  # every record in the file-info section is 48 bytes
_SHARD_BOOKEND = b"\xff" * 32
_FILE_FLAG_WITH_VERIFICATION = 1 << 31  # one extra 48-byte entry per segment
_FILE_FLAG_WITH_METADATA_EXT = 1 << 30  # one extra 48-byte entry (sha256)


def _merkle_hex(raw: bytes) -> str:
    """Render a 32-byte xet hash the way hf_xet prints it: four little-endian u64 words in hex."""
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


def parse_shard_file_sizes(data: bytes) -> dict[str, int]:
    """Map each file hash recorded in an xet shard (``.mdb``, version 2) to the file's byte size:
    the sum of its segments' unpacked bytes (`parse_shard_files` reads the layout)."""
    return {file: sum(segment.raw for segment in segments) for file, segments in parse_shard_files(data).items()}


class ShardIndex:
    """Sizes of every file hf_xet has uploaded into a local CAS directory, read from its shards.

    Shards are immutable once written, so each is parsed once; the directory is rescanned only
    when a hash is not yet known (i.e. right after an upload).
    """

    def __init__(self, cas_dir: Path) -> None:
        self._cas_dir = cas_dir
        self._sizes: dict[str, int] = {EMPTY_XET_HASH: 0}
        self._parsed: set[Path] = set()
        self._lock = threading.Lock()

    def size_of(self, xet_hash: str) -> int | None:
        """Byte size of the file with this xet hash, or None if no shard records it."""
        xet_hash = xet_hash.lower()
        with self._lock:
            if xet_hash not in self._sizes:
                self._rescan()
            return self._sizes.get(xet_hash)

    def _rescan(self) -> None:
        if not self._cas_dir.is_dir():
            return
        for shard in sorted(self._cas_dir.rglob("*.mdb")):
            if shard in self._parsed:
                continue
            try:
                self._sizes.update(parse_shard_file_sizes(shard.read_bytes()))
            except (OSError, ValueError):
                continue  # being written or not a shard we understand: try again next time
            self._parsed.add(shard)


# --------------------------------------------------------------------------------------------------
# The xet CAS over HTTP: what hf_xet's RemoteClient talks to
# --------------------------------------------------------------------------------------------------
#
# Sources (huggingface/xet-core; the stored snapshot is hf_xet 1.6.0, the installed one 1.8.0):
# * xet_client/src/cas_client/remote_client.rs: every request the RemoteClient sends and how it
#   reads the answers (paths, status codes, fallbacks);
# * xet_client/src/cas_types/mod.rs: the JSON bodies (QueryReconstructionResponse[V2],
#   UploadXorbResponse, UploadShardResponse, ShardUploadEvent);
# * xet_client/src/cas_client/simulation/local_server/handlers.rs: xet-core's own HTTP server for
#   tests, which "matches production" for the /v2/shards NDJSON stream and S3's multi-range answers;
# * 1.8.0's upload grants: xet-core xet_client/README.md ("Xorb uploads") and
#   api_changes/update_261006 ("Xorb uploads go through upload grants"); field names checked with
#   `strings` on the installed hf_xet.abi3.so (XorbUploadGrant: id, method, url, headers; the grant
#   request: length, checksum{algo: crc64nvme, value}).

XET_PREFIX = "default"  # xet_runtime config data.default_prefix: the only prefix the client uses
CasMode = Literal["http", "local"]
#: ``HUBSTUB_CAS=local`` selects hf_xet's own ``local://`` simulation client instead (see HubStub).
CAS_MODE_ENV = "HUBSTUB_CAS"
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK_HEADER = 8  # xorb_chunk_format.rs XorbChunkHeader: version u8, compressed u24, scheme u8, raw u24
_MAX_CHUNK_RAW = 128 * 1024  # xorb_object/constants.rs: TARGET_CHUNK_SIZE * MAXIMUM_CHUNK_MULTIPLIER
_MAX_XORB_BYTES = 64 * 1024 * 1024  # xorb_object/constants.rs MAX_XORB_BYTES (raw bytes per xorb)
_COMPRESSION_SCHEMES = (0, 1, 2)  # compression_scheme.rs: None, LZ4, ByteGrouping4LZ4
GRANT_TTL_SECONDS = 900
_CRC64_NVME_POLY = 0x9A6C9329AC4BC9B5  # CRC-64/NVME (0xAD93D23594C93659), bit-reflected


def _crc64_tables() -> tuple[list[int], ...]:
    base = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC64_NVME_POLY if crc & 1 else crc >> 1
        base.append(crc)
    tables = [base]
    for _ in range(7):
        prev = tables[-1]
        tables.append([(prev[i] >> 8) ^ base[prev[i] & 0xFF] for i in range(256)])
    return tuple(tables)


_CRC64_TABLES = _crc64_tables()


def crc64_nvme(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC-64/NVME, the checksum hf_xet 1.8.0 sends with a grant request (crate crc-fast), and that S3
    checks on a PUT carrying ``x-amz-checksum-crc64nvme``. ``crc`` continues an earlier result.

    Pure Python (slicing by 8, ~10 MB/s): no package that computes it is installed here.
    """
    t0, t1, t2, t3, t4, t5, t6, t7 = _CRC64_TABLES
    crc ^= 0xFFFFFFFFFFFFFFFF
    view = memoryview(data).cast("B")
    whole = len(view) // 8 * 8
    for (word,) in struct.iter_unpack("<Q", view[:whole]):
        x = crc ^ word
        crc = (
            t7[x & 0xFF]
            ^ t6[(x >> 8) & 0xFF]
            ^ t5[(x >> 16) & 0xFF]
            ^ t4[(x >> 24) & 0xFF]
            ^ t3[(x >> 32) & 0xFF]
            ^ t2[(x >> 40) & 0xFF]
            ^ t1[(x >> 48) & 0xFF]
            ^ t0[x >> 56]
        )
    for byte in view[whole:]:
        crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


class XorbChunk(NamedTuple):
    """One chunk of a stored xorb: its serialized bytes ``[start, end)`` and its raw length."""

    start: int
    end: int
    raw: int


def parse_xorb_chunks(data: bytes | memoryview) -> list[XorbChunk]:
    """Walk the chunk headers of a xorb as the client uploads it, and refuse a malformed one.

    hf_xet sends xorbs without the footer (xet-core xet_data/src/processing/file_upload_session.rs:
    ``SerializedXorbObject::from_xorb(xorb, false, ...)``, "XORBs are sent without footer - the
    server/client reconstructs it from chunk data"): a sequence of 8-byte headers
    (xorb_chunk_format.rs ``XorbChunkHeader``) each followed by its compressed bytes. The checks are
    the header's own ``validate`` (version 0, a known scheme, lengths within bounds) plus, for an
    uncompressed chunk, compressed == raw length (``deserialize_chunk_with_header_to_writer``
    refuses a chunk whose decompressed size differs from the header's; for scheme None the
    decompressed bytes are the compressed ones). The real CAS
    also recomputes the xorb hash from the decompressed chunks (blake3 over LZ4/BG4 data); that
    needs libraries not installed here, so a xorb whose content does not match its hash is not caught.
    """
    chunks: list[XorbChunk] = []
    pos, size, raw_total = 0, len(data), 0
    view = memoryview(data).cast("B")
    while pos < size:
        if pos + _CHUNK_HEADER > size:
            raise ValueError(f"truncated chunk header at byte {pos}")
        version, scheme = view[pos], view[pos + 4]
        compressed = int.from_bytes(view[pos + 1 : pos + 4], "little")
        raw = int.from_bytes(view[pos + 5 : pos + 8], "little")
        if version != 0:
            raise ValueError(f"chunk header version {version} at byte {pos}")
        if scheme not in _COMPRESSION_SCHEMES:
            raise ValueError(f"unknown compression scheme {scheme} at byte {pos}")
        if raw > _MAX_CHUNK_RAW or compressed > 2 * _MAX_CHUNK_RAW or (scheme == 0 and compressed != raw):
            raise ValueError(f"chunk lengths out of bounds at byte {pos}")
        end = pos + _CHUNK_HEADER + compressed
        if end > size:
            raise ValueError(f"truncated chunk at byte {pos}")
        chunks.append(XorbChunk(pos, end, raw))
        raw_total += raw
        pos = end
    if not chunks or raw_total > _MAX_XORB_BYTES:
        raise ValueError("a xorb holds 1 to MAX_XORB_BYTES raw bytes")
    return chunks


class FileSegment(NamedTuple):
    """One term of a file in a shard: a chunk range ``[chunk_start, chunk_end)`` of a xorb."""

    xorb: str
    raw: int
    chunk_start: int
    chunk_end: int


def parse_shard_files(data: bytes) -> dict[str, list[FileSegment]]:
    """Map each file hash recorded in an xet shard (``.mdb``, version 2) to its segments.

    Layout of the file-info section, right after the 48-byte header: per file a header entry
    (hash[32], flags u32, segment count u32, pad[8]), then one entry per segment (xorb hash[32],
    flags u32, unpacked bytes u32, chunk start u32, chunk end u32), then optional verification
    and metadata entries as the flags say; a hash of all 0xFF bytes ends the section.
    (xet-core xet_core_structures/src/metadata_shard/file_structs.rs, shard_format.rs.)
    """
    if len(data) < _SHARD_HEADER_SIZE or not data.startswith(_SHARD_TAG_PREFIX):
        raise ValueError("not an xet shard")
    (version,) = struct.unpack_from("<Q", data, 32)
    if version != 2:
        raise ValueError(f"unsupported xet shard version {version}")
    files: dict[str, list[FileSegment]] = {}
    pos = _SHARD_HEADER_SIZE
    while True:
        if pos + _SHARD_ENTRY_SIZE > len(data):
            raise ValueError("truncated xet shard")
        raw_hash = data[pos : pos + 32]
        if raw_hash == _SHARD_BOOKEND:
            return files
        flags, n_segments = struct.unpack_from("<II", data, pos + 32)
        pos += _SHARD_ENTRY_SIZE
        end = pos + n_segments * _SHARD_ENTRY_SIZE
        if end > len(data):
            raise ValueError("truncated xet shard")
        segments = []
        for _ in range(n_segments):
            raw, chunk_start, chunk_end = struct.unpack_from("<III", data, pos + 36)
            segments.append(FileSegment(_merkle_hex(data[pos : pos + 32]), raw, chunk_start, chunk_end))
            pos += _SHARD_ENTRY_SIZE
        if flags & _FILE_FLAG_WITH_VERIFICATION:
            pos += n_segments * _SHARD_ENTRY_SIZE
        if flags & _FILE_FLAG_WITH_METADATA_EXT:
            pos += _SHARD_ENTRY_SIZE
        files[_merkle_hex(raw_hash)] = segments


@dataclass
class _XetToken:
    write: bool
    expires_at: float
    service: bool


@dataclass
class _Grant:
    """An upload grant (a presigned PUT in production): what it allows and what arrived for it."""

    id: str
    prefix: str
    xorb: str
    length: int
    checksum: int
    expires_at: float
    headers: dict[str, str]
    uploaded: Path | None = None


class _CasError(Exception):
    """A CAS answer other than success: plain text body, as the CAS and S3 send errors."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.message)


class XetCas:
    """The xet CAS HTTP API on its own port, in the stand-in's event loop.

    Stores xorbs (``<cas_dir>/xet/xorbs/<prefix>/<hash>``, as uploaded: chunks without footer) and
    shards (``<cas_dir>/xet/xorbs/shards/<hash>.mdb``, where ``ShardIndex`` reads file sizes);
    serves reconstructions whose fetch URLs it serves itself, with HTTP Range, like S3 behind a
    presigned URL. Every request is recorded (``requests``) unless it came with the stand-in's own
    service token (``HubStub.read_file``).
    """

    def __init__(self, cas_dir: Path, host: str) -> None:
        self.root = cas_dir / "xet" / "xorbs"
        self.shard_dir = self.root / "shards"
        self.host = host
        self.port = 0
        self.grant_ttl = float(GRANT_TTL_SECONDS)
        #: Off: the grant endpoint answers 404, as a CAS without grants does; the client then uploads
        #: through ``POST /v1/xorbs`` (README "Xorb uploads").
        self.grants_enabled = True
        #: This many of the next grants are handed out already expired (see ``expire_grants``).
        self.expired_grants_ahead = 0
        #: Bytes per second at which xorb uploads are read, all of them together (None: as fast as the
        #: machine goes). A benchmark knob, to see hf_xet behind an uplink of a given speed: how many
        #: xorbs it holds while they wait for the link depends on it. Tests leave it off.
        self.upload_bytes_per_second: float | None = None
        self._link_free_at = 0.0
        self._lock = threading.Lock()
        self._tokens: dict[str, _XetToken] = {}
        self._grants: dict[str, _Grant] = {}
        self._files: dict[str, list[FileSegment]] = {}
        self._chunks: dict[str, list[XorbChunk]] = {}
        self._requests: list[RequestRecord] = []
        self._url_key = secrets.token_bytes(16)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # ---- control (any thread) -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def issue_token(self, *, write: bool, service: bool, ttl: float) -> tuple[str, float]:
        """A fresh xet access token (what the Hub's xet-*-token endpoints hand out)."""
        token = "xet_stub_" + secrets.token_hex(16)
        expires_at = time.time() + ttl
        with self._lock:
            self._tokens[token] = _XetToken(write=write, expires_at=expires_at, service=service)
        return token, expires_at

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def expire_grants(self) -> None:
        """Make every open grant expired, as if its presigned URL had outlived its lifetime."""
        with self._lock:
            for grant in self._grants.values():
                grant.expires_at = 0.0

    def xorb_path(self, prefix: str, xorb: str) -> Path:
        return self.root / prefix / xorb

    # ---- lifecycle (event loop) -----------------------------------------------------------------

    async def setup(self) -> None:
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "incoming").mkdir(parents=True, exist_ok=True)
        app = web.Application(client_max_size=2 * _MAX_XORB_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner

    async def go_online(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site = site
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def go_offline(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self._runner.server if self._runner is not None else None
        if server is not None:
            for connection in server.connections:
                connection.force_close()

    async def cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._site = None

    # ---- requests --------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        service = False
        try:
            response, service = await self._route(request)
        except _CasError as err:
            response = err.response()
        if not request.content.at_eof():
            await request.read()  # drain, so the keep-alive connection stays usable
        if not service:
            with self._lock:
                self._requests.append(RequestRecord(request.method, request.path, response.status))
        return response

    def _auth(self, request: web.Request, *, write: bool) -> _XetToken:
        """``Authorization: Bearer <xet token>`` as the RemoteClient sends it (cas_client/auth.rs);
        an unknown or expired token is 401, a read token on an upload 403. The client does not
        refresh on a 401: it refreshes ahead of the token's ``exp`` (auth.rs ``get_valid_token``,
        ``REFRESH_BUFFER_SEC`` = 30) and a 401 is an error it does not retry (retry_wrapper.rs
        retries only 5xx, 408 and 429). The status codes themselves are the stand-in's choice:
        xet-core has no CAS server that checks tokens."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            found = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if found is None or found.expires_at < time.time():
            raise _CasError(401, "Unauthorized")
        if write and not found.write:
            raise _CasError(403, "Forbidden: this token cannot upload")
        return found

    async def _route(self, request: web.Request) -> tuple[web.StreamResponse, bool]:
        parts = request.path.strip("/").split("/")
        method = request.method
        if parts[0] == "presigned" and len(parts) == 3 and parts[1] == "grants" and method == "PUT":
            return await self._grant_upload(request, parts[2]), False
        if parts[0] == "presigned" and len(parts) == 4 and parts[1] == "xorbs" and method == "GET":
            return await self._serve_xorb(request, parts[2], parts[3])
        if parts[:2] == ["v1", "telemetry"] and method == "POST":
            self._auth(request, write=False)
            return web.Response(status=200), False
        if len(parts) == 4 and parts[:2] == ["v1", "xorb-grants"] and method == "POST":
            token = self._auth(request, write=True)
            return await self._request_grant(request, _valid_prefix(parts[2]), _valid_hash(parts[3])), token.service
        if len(parts) == 6 and parts[:2] == ["v1", "xorb-commits"] and parts[4] == "grant" and method == "POST":
            token = self._auth(request, write=True)
            return await self._commit_grant(_valid_prefix(parts[2]), _valid_hash(parts[3]), parts[5]), token.service
        if len(parts) == 4 and parts[:2] == ["v1", "xorbs"] and method == "POST":
            token = self._auth(request, write=True)
            return await self._upload_xorb(request, _valid_prefix(parts[2]), _valid_hash(parts[3])), token.service
        if parts in (["v1", "shards"], ["v2", "shards"]) and method == "POST":
            token = self._auth(request, write=True)
            return await self._upload_shard(request, v2=parts[0] == "v2"), token.service
        if len(parts) == 3 and parts[1] == "reconstructions" and parts[0] in ("v1", "v2") and method == "GET":
            token = self._auth(request, write=False)
            file_hash, v2 = _valid_hash(parts[2]), parts[0] == "v2"
            # Off the loop: on a cache miss it reads shards and whole xorbs (up to 64 MiB) from disk,
            # and the Hub's REST API shares this loop.
            plan = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self._reconstruction(request, file_hash, v2=v2, service=token.service)
            )
            return plan, token.service
        if len(parts) == 4 and parts[:2] == ["v1", "chunks"] and method == "GET":
            # Global dedup: the stand-in tracks no chunk for it, and the CAS answers 404 for a chunk
            # it does not track (xet-core spec/api.md "Query Chunk Deduplication"; the client expects
            # it: remote_client.rs query_dedup_api `with_expected_404`).
            token = self._auth(request, write=False)
            _valid_hash(parts[3])
            return web.Response(status=404, text="Chunk not tracked by global deduplication"), token.service
        raise _CasError(404, "Not Found")

    # ---- xorb upload: grants (hf_xet 1.8.0) and the direct path ---------------------------------

    async def _request_grant(self, request: web.Request, prefix: str, xorb: str) -> web.Response:
        """``POST /v1/xorb-grants/{prefix}/{hash}`` ``{"length": N, "checksum": {"algo": "crc64nvme",
        "value": "<decimal>"}}``: 201 with a grant, 200 when the xorb is already stored, 404 when
        grants are off (the client then falls back to ``/v1/xorbs``)."""
        if not self.grants_enabled:
            raise _CasError(404, "Not Found")
        try:
            body = json.loads(await request.read())
            length = body["length"]
            checksum = body["checksum"]
            if checksum["algo"] != "crc64nvme" or not isinstance(checksum["value"], str):
                raise ValueError("checksum must be {'algo': 'crc64nvme', 'value': '<decimal>'}")
            crc = int(checksum["value"])
            if not isinstance(length, int) or not 0 < length <= 2 * _MAX_XORB_BYTES or not 0 <= crc < 1 << 64:
                raise ValueError("length or checksum out of range")
        except (ValueError, KeyError, TypeError) as err:
            raise _CasError(400, f"Bad grant request: {err}") from err
        if self.xorb_path(prefix, xorb).is_file():
            # README: "a 200 means the xorb already exists". The body is the stand-in's choice: the
            # client's XorbUploadGrantResult cases (granted / already_exists / unavailable, seen with
            # `strings` on hf_xet.abi3.so) suggest it reads only the status; not checked further.
            return web.json_response({}, status=200)
        grant_id = secrets.token_hex(16)
        # What the grant holds is the CAS's choice and xet-core does not document it (README: "a
        # grant (method, URL, and headers)"; the client sends "exactly the grant's headers"). The
        # stand-in's grant is an ASSUMED presigned S3 PUT: a conditional write (If-None-Match: *
        # answers 412 when the object exists, which the client counts as uploaded: README "A 412
        # means an earlier attempt already uploaded it") whose checksum header S3 verifies against
        # the body (S3's documented x-amz-checksum-crc64nvme, base64 of the big-endian CRC).
        headers = {
            "x-amz-checksum-crc64nvme": base64.b64encode(crc.to_bytes(8, "big")).decode(),
            "If-None-Match": "*",
            "Content-Type": "application/octet-stream",
        }
        with self._lock:
            expired = self.expired_grants_ahead > 0
            self.expired_grants_ahead -= expired
            expires_at = 0.0 if expired else time.time() + self.grant_ttl
            self._grants[grant_id] = _Grant(grant_id, prefix, xorb, length, crc, expires_at, headers)
        return web.json_response(
            {"id": grant_id, "method": "PUT", "url": f"{self.url}/presigned/grants/{grant_id}", "headers": headers},
            status=201,
        )

    async def _grant_upload(self, request: web.Request, grant_id: str) -> web.Response:
        """The grant URL (S3 in production): no CAS credentials, exactly the grant's headers, the
        announced length and checksum; 403 for an unknown or expired grant (the client requests a
        new one), 412 when this grant's object was already written."""
        with self._lock:
            grant = self._grants.get(grant_id)
        if "Authorization" in request.headers:
            # S3: a presigned URL plus an Authorization header is "Only one auth mechanism allowed".
            raise _CasError(400, "InvalidArgument: Only one auth mechanism allowed")
        if grant is None or grant.expires_at < time.time():
            raise _CasError(403, "AccessDenied: Request has expired or the signature does not match")
        for name, value in grant.headers.items():
            if name.lower() == "if-none-match":
                continue
            if request.headers.get(name) != value:
                raise _CasError(403, f"SignatureDoesNotMatch: header {name} differs from the grant's")
        stored = grant.uploaded is not None or self.xorb_path(grant.prefix, grant.xorb).is_file()
        if stored and request.headers.get("If-None-Match") == "*":
            raise _CasError(412, "PreconditionFailed: At least one of the pre-conditions you specified did not hold")
        if request.content_length != grant.length:
            raise _CasError(400, f"Content-Length {request.content_length} is not the granted {grant.length}")
        incoming = await self._receive(request)
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, incoming.read_bytes)
            if len(data) != grant.length:
                raise _CasError(400, "IncompleteBody: the body is shorter than Content-Length")
            crc = await asyncio.get_running_loop().run_in_executor(None, crc64_nvme, data)
            if crc != grant.checksum:
                raise _CasError(400, "BadDigest: The CRC64NVME you specified did not match the calculated checksum")
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        with self._lock:
            grant.uploaded = incoming
        return web.Response(status=200)

    async def _commit_grant(self, prefix: str, xorb: str, grant_id: str) -> web.Response:
        """``POST /v1/xorb-commits/{prefix}/{hash}/grant/{id}``: store what the grant's upload wrote,
        after checking it is a well-formed xorb; 404 when nothing was uploaded for this grant (README
        "Xorb uploads" step 3). ASSUMED, not in the README: the answer body is ``UploadXorbResponse``
        (``{"was_inserted": bool}``, the only one-field response type in hf_xet.abi3.so's strings),
        and a commit after a 412 upload (the xorb already stored) is a 200, since the README counts
        that 412 as uploaded."""
        with self._lock:
            grant = self._grants.get(grant_id)
        if grant is None or (grant.prefix, grant.xorb) != (prefix, xorb) or grant.uploaded is None:
            if self.xorb_path(prefix, xorb).is_file() and grant is not None:
                return web.json_response({"was_inserted": False})
            raise _CasError(404, "No data was uploaded for this grant")
        inserted = await self._store_xorb(prefix, xorb, grant.uploaded)
        with self._lock:
            self._grants.pop(grant_id, None)
        return web.json_response({"was_inserted": inserted})

    async def _upload_xorb(self, request: web.Request, prefix: str, xorb: str) -> web.Response:
        """``POST /v1/xorbs/{prefix}/{hash}``, the direct path (before 1.8.0, and the fallback):
        answers ``UploadXorbResponse`` (cas_types ``{"was_inserted": bool}``)."""
        incoming = await self._receive(request)
        return web.json_response({"was_inserted": await self._store_xorb(prefix, xorb, incoming)})

    async def _receive(self, request: web.Request) -> Path:
        """Write the request body to a file under ``incoming/``, as it arrives."""
        incoming = self.root / "incoming" / secrets.token_hex(8)
        with incoming.open("wb") as out:
            async for block in request.content.iter_chunked(1 << 20):
                out.write(block)
                rate = self.upload_bytes_per_second
                if rate:
                    # One link shared by every upload in flight: each block takes its turn on it.
                    now = time.monotonic()
                    self._link_free_at = max(now, self._link_free_at) + len(block) / rate
                    await asyncio.sleep(self._link_free_at - now)
        return incoming

    async def _store_xorb(self, prefix: str, xorb: str, incoming: Path) -> bool:
        target = self.xorb_path(prefix, xorb)
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, incoming.read_bytes)
            try:
                chunks = parse_xorb_chunks(data)
            except ValueError as err:
                raise _CasError(400, f"Invalid xorb: {err}") from err
            if target.is_file():
                return False
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(incoming, target)
        finally:
            incoming.unlink(missing_ok=True)
        with self._lock:
            self._chunks[xorb] = chunks
        return True

    def _xorb_chunks(self, xorb: str) -> list[XorbChunk] | None:
        with self._lock:
            chunks = self._chunks.get(xorb)
        if chunks is None:
            path = self.xorb_path(XET_PREFIX, xorb)
            if not path.is_file():
                return None
            chunks = parse_xorb_chunks(path.read_bytes())
            with self._lock:
                self._chunks[xorb] = chunks
        return chunks

    # ---- shards ----------------------------------------------------------------------------------

    async def _upload_shard(self, request: web.Request, *, v2: bool) -> web.Response:
        """``POST /v2/shards`` (what 1.8.0 tries first; NDJSON progress frames ending in ``result``)
        and ``POST /v1/shards`` (``UploadShardResponse``: result 0 exists, 1 sync performed).

        Validation as the CAS does it ("Verifying the uploaded shard against xorb metadata",
        cas_types ``ShardUploadEvent::Validating``): every segment must name a stored xorb and a
        chunk range inside it. A failure after the stream started is a terminal ``error`` frame
        with status 200 (the production contract, handlers.rs ``post_shard_v2``); v1 answers 400.
        """
        data = await request.read()
        try:
            files = parse_shard_files(data)
        except ValueError as err:
            raise _CasError(400, f"Invalid shard: {err}") from err
        problem = None
        for file_hash, segments in files.items():
            for segment in segments:
                chunks = self._xorb_chunks(segment.xorb)
                if chunks is None:
                    problem = f"file {file_hash} references xorb {segment.xorb}, which was never uploaded"
                elif not (0 <= segment.chunk_start < segment.chunk_end <= len(chunks)) or segment.raw != sum(
                    c.raw for c in chunks[segment.chunk_start : segment.chunk_end]
                ):
                    problem = f"file {file_hash}: chunks {segment.chunk_start}-{segment.chunk_end} of {segment.xorb}"
        if problem is not None and not v2:
            raise _CasError(400, f"Shard validation failed: {problem}")
        existed = False
        if problem is None:
            name = hashlib.sha256(data).hexdigest() + ".mdb"
            target = self.shard_dir / name
            existed = target.is_file()
            if not existed:
                partial = self.shard_dir / (name + ".part")
                partial.write_bytes(data)
                os.replace(partial, target)
            with self._lock:
                self._files.update(files)
        if not v2:
            return web.json_response({"result": 0 if existed else 1})
        frames: list[dict[str, Any]] = [{"type": "validating", "verified": 0, "total": 1}]
        if problem is not None:
            frames.append({"type": "error", "message": f"Shard validation failed: {problem}", "retryable": False})
        else:
            frames += [
                {"type": "validating", "verified": 1, "total": 1},
                {"type": "committing", "stage": "uploading"},
                {"type": "committing", "stage": "syncing"},
                {"type": "result"},
            ]
        body = "".join(json.dumps(frame) + "\n" for frame in frames)
        return web.Response(status=200, body=body.encode(), content_type="application/x-ndjson")

    def _file_segments(self, file_hash: str) -> list[FileSegment] | None:
        with self._lock:
            found = self._files.get(file_hash)
        if found is not None:
            return found
        for shard in sorted(self.shard_dir.glob("*.mdb")):
            with contextlib.suppress(OSError, ValueError):
                parsed = parse_shard_files(shard.read_bytes())
                with self._lock:
                    self._files.update(parsed)
        with self._lock:
            return self._files.get(file_hash)

    # ---- downloads -------------------------------------------------------------------------------

    def _reconstruction(self, request: web.Request, file_hash: str, *, v2: bool, service: bool) -> web.Response:
        """``GET /v{1,2}/reconstructions/{file_id}`` with an optional ``Range: bytes=a-b``.

        The client asks v2 first and falls back to v1 only on 404/501 (remote_client.rs
        ``get_reconstruction_with_version_override``); both are served. The terms cover the chunks
        that hold the range, ``offset_into_first_range`` is where it starts in the first term, 416
        when it starts past the end (spec/api.md "Get File Reconstruction").
        """
        segments = self._file_segments(file_hash)
        if segments is None:
            raise _CasError(404, "File not found")
        size = sum(segment.raw for segment in segments)
        start, end = 0, size
        header = request.headers.get("Range")
        if header is not None:
            found = re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())
            if found is None:
                raise _CasError(416, "Invalid range")
            start = int(found.group(1))
            end = min(size, int(found.group(2)) + 1) if found.group(2) else size
            if start >= size or start >= end:
                raise _CasError(416, "Range not satisfiable")
        terms: list[dict[str, Any]] = []
        fetch: dict[str, list[tuple[int, int]]] = {}
        offset_into_first = 0
        position = 0
        for segment in segments:
            chunks = self._xorb_chunks(segment.xorb)
            if chunks is None:
                raise _CasError(500, f"xorb {segment.xorb} is missing")
            first = last = None
            for index in range(segment.chunk_start, segment.chunk_end):
                chunk_end = position + chunks[index].raw
                if chunk_end > start and position < end:
                    if first is None:
                        first = index
                        if not terms:
                            offset_into_first = start - position
                    last = index
                position = chunk_end
            if first is None or last is None:
                continue
            terms.append(
                {
                    "hash": segment.xorb,
                    "unpacked_length": sum(c.raw for c in chunks[first : last + 1]),
                    "range": {"start": first, "end": last + 1},
                }
            )
            fetch.setdefault(segment.xorb, []).append((first, last + 1))
        base = self.url
        if v2:
            xorbs: dict[str, list[dict[str, Any]]] = {}
            for xorb, ranges in fetch.items():
                chunks = self._xorb_chunks(xorb) or []
                merged = _merge_ranges(ranges)
                xorbs[xorb] = [
                    {
                        "url": self._presigned(base, xorb, service),
                        "ranges": [
                            {
                                "chunks": {"start": a, "end": b},
                                "bytes": {"start": chunks[a].start, "end": chunks[b - 1].end - 1},
                            }
                            for a, b in merged
                        ],
                    }
                ]
            return web.json_response({"offset_into_first_range": offset_into_first, "terms": terms, "xorbs": xorbs})
        fetch_info: dict[str, list[dict[str, Any]]] = {}
        for xorb, ranges in fetch.items():
            chunks = self._xorb_chunks(xorb) or []
            fetch_info[xorb] = [
                {
                    "range": {"start": a, "end": b},
                    "url": self._presigned(base, xorb, service),
                    "url_range": {"start": chunks[a].start, "end": chunks[b - 1].end - 1},
                }
                for a, b in _merge_ranges(ranges)
            ]
        return web.json_response(
            {"offset_into_first_range": offset_into_first, "terms": terms, "fetch_info": fetch_info}
        )

    def _presigned(self, base: str, xorb: str, service: bool) -> str:
        """A fetch URL signed for this xorb; the signature also says whether the stand-in's own
        reader asked for it, so its fetches stay out of the request log like its other requests."""
        signed = self._url_key + xorb.encode() + (b"service" if service else b"user")
        return f"{base}/presigned/xorbs/{xorb}/{hashlib.sha256(signed).hexdigest()[:32]}"

    async def _serve_xorb(self, request: web.Request, xorb: str, signature: str) -> tuple[web.Response, bool]:
        """A fetch URL (S3/CloudFront in production): the stored xorb's bytes for the ``Range``
        header, one range as 206, several as ``multipart/byteranges`` (RFC 7233 4.1; the client
        parses both, remote_client.rs ``get_file_term_data``); 403 for a URL this server did not sign."""
        signed = {self._presigned("", xorb, service): service for service in (False, True)}
        service = signed.get(f"/presigned/xorbs/{xorb}/{signature}")
        if not _HASH_RE.fullmatch(xorb) or service is None:
            raise _CasError(403, "AccessDenied")
        return await self._xorb_ranges(request, xorb), service

    async def _xorb_ranges(self, request: web.Request, xorb: str) -> web.Response:
        path = self.xorb_path(XET_PREFIX, xorb)
        if not path.is_file():
            raise _CasError(404, "NoSuchKey")
        data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
        header = request.headers.get("Range", "")
        if not header:
            return web.Response(status=200, body=data)
        ranges: list[tuple[int, int]] = []
        if header.startswith("bytes="):
            for part in header[len("bytes=") :].split(","):
                low, _, high = part.strip().partition("-")
                if not low.isdigit() or not high.isdigit() or int(low) > int(high) or int(low) >= len(data):
                    raise _CasError(416, "InvalidRange")
                ranges.append((int(low), min(int(high), len(data) - 1)))
        if not ranges:
            raise _CasError(416, "InvalidRange")
        if len(ranges) == 1:
            first, last = ranges[0]
            return web.Response(
                status=206,
                body=data[first : last + 1],
                headers={"Content-Range": f"bytes {first}-{last}/{len(data)}"},
                content_type="application/octet-stream",
            )
        boundary = "stub_" + secrets.token_hex(8)
        body = bytearray()
        for first, last in ranges:
            body += (
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {first}-{last}/{len(data)}\r\n\r\n"
            ).encode()
            body += data[first : last + 1] + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        return web.Response(
            status=206, body=bytes(body), headers={"Content-Type": f"multipart/byteranges; boundary={boundary}"}
        )


def _valid_prefix(text: str) -> str:
    """The client only ever uses the default prefix (xet_runtime data.default_prefix); anything else
    is refused rather than turned into a path."""
    if text != XET_PREFIX:
        raise _CasError(400, f"Invalid prefix {text!r}")
    return text


def _valid_hash(text: str) -> str:
    if not _HASH_RE.fullmatch(text):
        raise _CasError(400, f"Invalid hash {text!r}")
    return text


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# --------------------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------------------


@dataclass
class _User:
    name: str
    token: str
    role: Role
    orgs: tuple[str, ...]


@dataclass
class _File:
    xet_hash: str
    size: int
    mtime: int
    uploaded_at: float
    content_type: str | None


@dataclass
class _Bucket:
    namespace: str
    name: str
    private: bool
    created_at: float
    updated_at: float
    files: dict[str, _File] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class _FailRule:
    remaining: int
    status: int
    retry_after: int | None
    paths: tuple[str, ...] | None
    methods: tuple[str, ...] | None
    reset_in: int | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.paths is None or any(path.startswith(prefix) for prefix in self.paths)


@dataclass
class _Window:
    """One fixed rate-limit window of one caller and group: ``used`` requests until ``ends_at``."""

    ends_at: float
    used: int = 0


def _rate_limit_group(path: str) -> str:
    """The Hub's three request classes (docs/hub/rate-limits.md): Hub APIs, resolvers, pages."""
    if "/resolve/" in path:
        return "resolvers"
    if path.startswith("/api/"):
        return "api"
    return "pages"


def _rate_limit_message(group: str, quota: int) -> str:
    """The Hub's own words for a used-up window, as a git-lfs batch call quoted them
    (github.com/OpenHUTB/hutb issue #3329, 2025-10: "batch response: We had to rate limit you,
    you hit the quota of 1000 api requests per 5 minutes period. Upgrade to ...")."""
    return (
        f"We had to rate limit you, you hit the quota of {quota} {group} requests per 5 minutes period."
        " Upgrade to a PRO user or Team/Enterprise organization account (https://hf.co/pricing) to get"
        " higher limits. See https://huggingface.co/docs/hub/rate-limits"
    )


def _rate_limit_headers(group: str, remaining: int, reset_in: float, quota: int) -> dict[str, str]:
    """The headers exactly as the Hub writes them (huggingface_hub issue #3553)."""
    seconds = max(0, int(-(-reset_in // 1)))  # whole seconds, rounded up, as the Hub reports them
    return {
        "RateLimit": f'"{group}";r={max(0, remaining)};t={seconds}',
        "RateLimit-Policy": f'"fixed window";"{group}";q={quota};w={RATE_LIMIT_WINDOW}',
    }


@dataclass(frozen=True)
class _Caller:
    """Who is calling: ``user`` is None for anonymous; ``service`` is the stand-in's own reader."""

    user: _User | None
    service: bool = False


class _HubError(Exception):
    """An error answer in the Hub's shape: ``X-Error-Message``/``X-Error-Code`` plus a JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code is not None:
            headers["X-Error-Code"] = self.code
        return web.json_response({"error": self.message, **self.extra}, status=self.status, headers=headers)


def _iso(ts: float) -> str:
    """ISO-8601 with milliseconds and ``Z``, the Hub's timestamp format."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_bucket_id(bucket_id: str) -> tuple[str, str]:
    namespace, sep, name = bucket_id.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"invalid bucket id {bucket_id!r}: expected 'namespace/name'")
    return namespace, name


def _valid_file_path(path: object) -> bool:
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


# --------------------------------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------------------------------


class HubStub:
    """In-process Hub stand-in; see the module docstring for what it emulates and why.

    Control methods may be called from any thread; the HTTP side runs on a private event loop.
    """

    def __init__(
        self,
        cas_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 1000,
        cas: CasMode | None = None,
    ) -> None:
        self.cas_dir = Path(cas_dir).absolute()
        mode = cas if cas is not None else os.environ.get(CAS_MODE_ENV, "http")
        if mode not in ("http", "local"):
            raise ValueError(f"cas must be 'http' or 'local', not {mode!r}")
        #: "http": the xet CAS API served here (``XetCas``), so hf_xet runs its RemoteClient, what
        #: users run; "local": a ``local://`` casUrl, hf_xet's own simulation client (opt-in).
        self.cas_mode: CasMode = "http" if mode == "http" else "local"
        self._cas = XetCas(self.cas_dir, host) if self.cas_mode == "http" else None
        self.host = host
        self.page_size = page_size
        self._port = port
        self._lock = threading.RLock()
        self._users: dict[str, _User] = {}  # by token
        self._buckets: dict[str, _Bucket] = {}  # by id
        self._fail_rules: list[_FailRule] = []
        self._requests: list[RequestRecord] = []
        self._quotas: dict[str, int] = dict(RATE_LIMIT_QUOTAS)
        self._windows: dict[tuple[str, str], _Window] = {}  # by (caller key, group)
        self._shards = ShardIndex(self.cas_dir)
        # Lets read_file fetch any bucket without a user token; its requests bypass failure
        # injection and are not recorded, so observing the stand-in does not disturb tests.
        self._service_token = "hf_stub_service_" + secrets.token_hex(16)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._online = False
        #: Requests under these path prefixes wait, unanswered, until the event is set (`hold`).
        self._hold: tuple[tuple[str, ...], asyncio.Event] | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Base URL to give the client (``HfApi(endpoint=...)`` / ``HF_ENDPOINT``)."""
        if self._port == 0:
            raise RuntimeError("HubStub is not started")
        return f"http://{self.host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def online(self) -> bool:
        return self._online

    def start(self) -> str:
        """Start listening (port 0 picks a free one, kept for the stand-in's lifetime)."""
        if self._thread is not None:
            raise RuntimeError("HubStub already started")
        self.cas_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, args=(loop,), name="hubstub", daemon=True)
        self._thread.start()
        self._call(self._async_start())
        return self.endpoint

    def stop(self) -> None:
        """Stop serving and end the background loop; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._async_stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_STARTUP_TIMEOUT)
        loop.close()
        self._loop = None
        self._thread = None

    def go_offline(self) -> None:
        """Refuse connections: stop listening and drop open (keep-alive) connections.

        The port stays reserved in our bookkeeping only; ``go_online`` binds the same port again.
        """
        self._call(self._async_go_offline())

    def go_online(self) -> None:
        """Listen again on the same port."""
        self._call(self._async_go_online())

    def __enter__(self) -> HubStub:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- state control ---------------------------------------------------------------------------

    def add_user(self, name: str, token: str, role: Role = "write", orgs: Iterable[str] = ()) -> None:
        """Register a token. ``role="read"`` mirrors a read-only access token (403 on writes)."""
        if role not in ("read", "write"):
            raise ValueError(f"role must be 'read' or 'write', not {role!r}")
        with self._lock:
            self._users[token] = _User(name=name, token=token, role=role, orgs=tuple(orgs))

    def create_bucket(self, bucket_id: str, *, private: bool = True) -> None:
        """Seed a bucket directly (no request is recorded); no-op if it exists."""
        namespace, name = _parse_bucket_id(bucket_id)
        now = time.time()
        with self._lock:
            self._buckets.setdefault(bucket_id, _Bucket(namespace, name, private, now, now))

    def set_private(self, bucket_id: str, private: bool) -> None:
        """Flip visibility, as someone using the web UI would. KeyError if there is no such bucket."""
        with self._lock:
            bucket = self._buckets[bucket_id]
            bucket.private = private
            bucket.updated_at = time.time()

    def bucket_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._buckets)

    def is_private(self, bucket_id: str) -> bool:
        with self._lock:
            return self._buckets[bucket_id].private

    def files(self, bucket_id: str) -> dict[str, StubFile]:
        """Snapshot of a bucket's files by path (empty if the bucket does not exist)."""
        with self._lock:
            bucket = self._buckets.get(bucket_id)
            if bucket is None:
                return {}
            return {
                path: StubFile(
                    xet_hash=f.xet_hash,
                    size=f.size,
                    mtime=f.mtime,
                    uploaded_at=f.uploaded_at,
                    content_type=f.content_type,
                )
                for path, f in sorted(bucket.files.items())
            }

    def fail_next(
        self,
        n: int,
        status: int = 503,
        retry_after: int | None = None,
        paths: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        reset_in: int | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` instead of serving them.

        ``paths`` are URL-path prefixes (e.g. ``"/api/buckets/alice/traces/batch"``); None matches
        every request. ``retry_after`` adds a ``Retry-After`` header in seconds (note that the
        client sleeps ``retry_after + 1`` s). An injected 429 is the Hub's used-up window:
        ``RateLimit: ...;r=0;t=<reset_in>`` (default: the caller's current window's remaining
        seconds) and no ``Retry-After`` unless asked for. Rules queue up and are consumed in order.
        """
        if n <= 0:
            return
        rule = _FailRule(
            remaining=n,
            status=status,
            retry_after=retry_after,
            paths=None if paths is None else tuple(paths),
            methods=None if methods is None else tuple(m.upper() for m in methods),
            reset_in=reset_in,
        )
        with self._lock:
            self._fail_rules.append(rule)

    def hold(self, paths: Iterable[str]) -> None:
        """Keep every request under these URL-path prefixes waiting, unanswered, until `release`:
        an upload stays in flight exactly as long as a test needs, with nothing timed."""
        self._call(self._async_hold(tuple(paths)))

    def release(self) -> None:
        """Let held requests (and later ones) through; safe to call when nothing is held."""
        self._call(self._async_release())

    async def _async_hold(self, paths: tuple[str, ...]) -> None:
        await self._async_release()
        self._hold = (paths, asyncio.Event())

    async def _async_release(self) -> None:
        if self._hold is not None:
            self._hold[1].set()
            self._hold = None

    def clear_failures(self) -> None:
        with self._lock:
            self._fail_rules.clear()

    def set_rate_limit(self, group: str, quota: int) -> None:
        """Requests per 5-minute window for ``group`` ("api", "resolvers", "pages"), for every caller."""
        with self._lock:
            self._quotas[group] = quota

    def exhaust_rate_limit(self, group: str = "api", resets_in: float = 55.0) -> None:
        """Use up every caller's current ``group`` window, which now ends in ``resets_in`` seconds.

        What a burst of traffic does on the Hub: each request of the group answers 429 with
        ``r=0;t=<seconds left>`` until the window ends, then a fresh window starts.
        """
        with self._lock:
            ends_at = time.time() + resets_in
            quota = self._quotas[group]
            keys = {key for key, grp in self._windows if grp == group} | {_ANONYMOUS}
            keys |= {user.token for user in self._users.values()}
            for key in keys:
                self._windows[(key, group)] = _Window(ends_at=ends_at, used=quota)

    def reset_rate_limits(self) -> None:
        """Start fresh windows for everyone (as if five minutes had passed)."""
        with self._lock:
            self._windows.clear()

    def pending_failures(self) -> int:
        with self._lock:
            return sum(rule.remaining for rule in self._fail_rules)

    @property
    def requests(self) -> list[RequestRecord]:
        """Copy of every answered request so far (control and ``read_file`` traffic excluded)."""
        with self._lock:
            return list(self._requests)

    def count(self, method: str | None = None, path_suffix: str | None = None) -> int:
        """How many recorded requests match the method and/or end with ``path_suffix``."""
        return sum(
            1
            for record in self.requests
            if (method is None or record.method == method.upper())
            and (path_suffix is None or record.path.endswith(path_suffix))
        )

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def cas(self) -> XetCas:
        """The CAS server (``cas_mode == "http"`` only): its request log, grant controls."""
        if self._cas is None:
            raise RuntimeError("this stand-in uses a local:// CAS")
        return self._cas

    @property
    def cas_requests(self) -> list[RequestRecord]:
        """Every request the CAS answered (empty for a ``local://`` CAS; ``read_file`` excluded)."""
        return [] if self._cas is None else self._cas.requests

    def size_of_hash(self, xet_hash: str) -> int | None:
        """Size the stand-in derives for an xet hash from the CAS shards (None if unknown)."""
        return self._shards.size_of(xet_hash)

    def read_file(self, bucket_id: str, path: str, *, token: str | None = None) -> bytes:
        """Download one file through the real ``HfApi.download_bucket_files`` and return its bytes.

        Why through the client: asserting on what a real download yields proves the upload is
        usable, not just that the stand-in recorded a hash. Uses a private service token unless
        ``token`` is given. With a ``local://`` CAS, hf_xet locks it during the download: do not call
        this while another process is uploading.
        """
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=token or self._service_token)
        with tempfile.TemporaryDirectory(prefix="hubstub-read-") as tmp:
            dest = Path(tmp) / "file"
            api.download_bucket_files(bucket_id, [(path, str(dest))], raise_on_missing_files=True)
            return dest.read_bytes()

    # ---- event loop plumbing ---------------------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("HubStub is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=_STARTUP_TIMEOUT)

    async def _async_start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        if self._cas is not None:
            await self._cas.setup()
        await self._async_go_online()
        address = runner.addresses[0]
        self._port = int(address[1])

    async def _async_go_online(self) -> None:
        if self._online:
            return
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        await site.start()
        self._site = site
        if self._cas is not None:
            await self._cas.go_online()
        self._online = True

    async def _async_go_offline(self) -> None:
        if not self._online:
            return
        assert self._site is not None and self._runner is not None
        self._online = False
        await self._site.stop()
        self._site = None
        server = self._runner.server
        if server is not None:
            for connection in server.connections:
                connection.force_close()
        if self._cas is not None:
            await self._cas.go_offline()

    async def _async_stop(self) -> None:
        await self._async_release()  # a held request must not keep the shutdown waiting
        self._online = False
        if self._cas is not None:
            await self._cas.cleanup()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._site = None

    # ---- request handling ------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/__stub__/"):
            try:
                return await self._control(request)
            except _HubError as err:
                return err.response()
        service = request.headers.get("Authorization", "") == f"Bearer {self._service_token}"
        held = self._hold
        if held is not None and not service and path.startswith(held[0]):
            await held[1].wait()
        rule = None if service else self._take_failure(request.method, path)
        limit = None if service else self._count_request(request, path)
        if rule is not None:
            await request.read()  # drain so the keep-alive connection stays usable
            headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
            if rule.status == 429 and limit is not None:
                group, _, reset_in, quota = limit
                reset = rule.reset_in if rule.reset_in is not None else reset_in
                limit = (group, 0, reset, quota)
            response: web.StreamResponse = _HubError(
                rule.status, f"Injected failure ({rule.status})", headers=headers
            ).response()
        elif limit is not None and limit[1] < 0:
            await request.read()
            group = limit[0]
            limit = (group, 0, limit[2], limit[3])
            response = _HubError(429, _rate_limit_message(group, limit[3])).response()
        else:
            try:
                response = await self._route(request)
            except _HubError as err:
                response = err.response()
        if limit is not None:
            response.headers.update(_rate_limit_headers(*limit))
        trace = request.headers.get("X-Amzn-Trace-Id")
        if trace is not None:
            response.headers.setdefault("X-Request-Id", trace)
        if not service:
            with self._lock:
                self._requests.append(RequestRecord(request.method, path, response.status))
        return response

    def _count_request(self, request: web.Request, path: str) -> tuple[str, int, float, int]:
        """Count one request against its caller's window: (group, remaining, seconds left, quota).

        ``remaining`` is negative when the window was already used up: the request is refused.
        """
        header = request.headers.get("Authorization", "")
        key = header.partition(" ")[2].strip() if header else _ANONYMOUS
        group = _rate_limit_group(path)
        now = time.time()
        with self._lock:
            quota = self._quotas.get(group, RATE_LIMIT_QUOTAS["pages"])
            window = self._windows.get((key, group))
            if window is None or now >= window.ends_at:
                window = self._windows[(key, group)] = _Window(ends_at=now + RATE_LIMIT_WINDOW)
            window.used += 1
            return group, quota - window.used, window.ends_at - now, quota

    def _take_failure(self, method: str, path: str) -> _FailRule | None:
        with self._lock:
            for rule in self._fail_rules:
                if rule.remaining > 0 and rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._fail_rules.remove(rule)
                    return rule
        return None

    async def _route(self, request: web.Request) -> web.StreamResponse:
        segments = [unquote(part) for part in request.rel_url.raw_path.split("/")[1:]]
        method = request.method
        if segments[:2] == ["api", "whoami-v2"] and len(segments) == 2:
            return self._whoami(request) if method == "GET" else _method_not_allowed()
        if segments[:2] == ["api", "agent-harnesses"] and len(segments) == 2:
            # Public; the client fetches it (without auth) to build its user-agent.
            return web.json_response({"standardEnvVars": [], "harnesses": {}})
        if segments[:2] == ["api", "buckets"] and len(segments) >= 3:
            return await self._bucket_api(request, segments[2:])
        if segments[:1] == ["buckets"] and len(segments) >= 5 and segments[3] == "resolve":
            if method not in ("HEAD", "GET"):
                return _method_not_allowed()
            return self._resolve(request, segments[1], segments[2], "/".join(segments[4:]))
        raise _HubError(404, "Sorry, we can't find the page you are looking for.")

    async def _bucket_api(self, request: web.Request, rest: list[str]) -> web.StreamResponse:
        method = request.method
        if len(rest) == 1:
            return self._list_buckets(request, rest[0]) if method == "GET" else _method_not_allowed()
        namespace, name, action = rest[0], rest[1], rest[2:]
        if not action:
            if method == "POST":
                return await self._create_bucket(request, namespace, name)
            if method == "GET":
                return self._bucket_info(request, namespace, name)
            if method == "DELETE":
                return self._delete_bucket(request, namespace, name)
            return _method_not_allowed()
        head = action[0]
        if head in ("xet-write-token", "xet-read-token") and len(action) == 1:
            if method != "GET":
                return _method_not_allowed()
            return self._xet_token(request, namespace, name, write=head == "xet-write-token")
        if head == "batch" and len(action) == 1:
            return await self._batch(request, namespace, name) if method == "POST" else _method_not_allowed()
        if head == "paths-info" and len(action) == 1:
            return await self._paths_info(request, namespace, name) if method == "POST" else _method_not_allowed()
        if head == "tree":
            if method != "GET":
                return _method_not_allowed()
            return self._tree(request, namespace, name, "/".join(action[1:]))
        if head == "settings" and len(action) == 1:
            return await self._settings(request, namespace, name) if method == "PUT" else _method_not_allowed()
        raise _HubError(404, "Sorry, we can't find the page you are looking for.")

    # ---- auth ------------------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> _Caller:
        """Resolve the bearer token. An unknown token is a 401 on every endpoint, like the Hub."""
        header = request.headers.get("Authorization")
        if header is None:
            return _Caller(user=None)
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _HubError(401, INVALID_CREDENTIALS)
        if token == self._service_token:
            return _Caller(user=None, service=True)
        with self._lock:
            user = self._users.get(token)
        if user is None:
            raise _HubError(401, INVALID_CREDENTIALS)
        return _Caller(user=user)

    @staticmethod
    def _is_member(caller: _Caller, namespace: str) -> bool:
        user = caller.user
        return user is not None and (namespace == user.name or namespace in user.orgs)

    def _not_found(self, caller: _Caller) -> _HubError:
        # The Hub answers 401 to anonymous callers and 404 to authenticated ones, and never says
        # whether a private bucket exists.
        status = 401 if caller.user is None and not caller.service else 404
        return _HubError(status, "Repository not found", code="RepoNotFound")

    def _readable_bucket(self, caller: _Caller, namespace: str, name: str) -> _Bucket:
        bucket = self._buckets.get(f"{namespace}/{name}")
        if bucket is None:
            raise self._not_found(caller)
        if bucket.private and not caller.service and not self._is_member(caller, namespace):
            raise self._not_found(caller)
        return bucket

    def _writable_bucket(self, caller: _Caller, namespace: str, name: str) -> _Bucket:
        bucket = self._readable_bucket(caller, namespace, name)
        self._require_write(caller, namespace)
        return bucket

    def _require_write(self, caller: _Caller, namespace: str) -> None:
        user = caller.user
        if user is None:
            raise _HubError(401, "You must be authenticated to access this resource")
        if user.role != "write":
            raise _HubError(403, "This token only has read access; a write token is required")
        if not self._is_member(caller, namespace):
            raise _HubError(403, f"You don't have the rights to write to '{namespace}'")

    # ---- endpoints -------------------------------------------------------------------------------

    def _whoami(self, request: web.Request) -> web.Response:
        caller = self._caller(request)
        user = caller.user
        if user is None:
            raise _HubError(401, INVALID_CREDENTIALS)
        return web.json_response(
            {
                "type": "user",
                "id": f"stub-{user.name}",
                "name": user.name,
                "fullname": user.name,
                "orgs": [{"name": org, "type": "org"} for org in user.orgs],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": f"{user.name}-{user.role}", "role": user.role},
                },
            }
        )

    def _bucket_json(self, request: web.Request, bucket: _Bucket) -> dict[str, Any]:
        return {
            "id": bucket.id,
            "name": bucket.name,
            "namespace": bucket.namespace,
            "private": bucket.private,
            "createdAt": _iso(bucket.created_at),
            "updatedAt": _iso(bucket.updated_at),
            "size": sum(f.size for f in bucket.files.values()),
            "totalFiles": len(bucket.files),
            "url": f"{_base_url(request)}/buckets/{bucket.id}",
        }

    def _list_buckets(self, request: web.Request, namespace: str) -> web.Response:
        caller = self._caller(request)
        if namespace == "me":
            if caller.user is None:
                raise _HubError(401, "You must be authenticated to access this resource")
            namespace = caller.user.name
        search = request.query.get("search")
        with self._lock:
            listed = [
                self._bucket_json(request, bucket)
                for bucket in sorted(self._buckets.values(), key=lambda b: b.id)
                if bucket.namespace == namespace
                and (not bucket.private or caller.service or self._is_member(caller, namespace))
                and (search is None or search in bucket.name)
            ]
        return web.json_response(listed)

    async def _create_bucket(self, request: web.Request, namespace: str, name: str) -> web.Response:
        caller = self._caller(request)
        body = await _json_body(request, default={})
        if not isinstance(body, dict):
            raise _HubError(400, "Body must be a JSON object")
        if namespace == "me":
            if caller.user is None:
                raise _HubError(401, "You must be authenticated to access this resource")
            namespace = caller.user.name
        self._require_write(caller, namespace)
        if not _NAME_RE.match(name):
            raise _HubError(400, f"Invalid bucket name {name!r}")
        visibility = body.get("visibility", "public")
        if visibility not in ("public", "private"):
            raise _HubError(400, "visibility must be 'public' or 'private'")
        bucket_id = f"{namespace}/{name}"
        url = f"{_base_url(request)}/buckets/{bucket_id}"
        with self._lock:
            if bucket_id in self._buckets:
                raise _HubError(409, "You already created this bucket", extra={"url": url})
            now = time.time()
            self._buckets[bucket_id] = _Bucket(namespace, name, visibility == "private", now, now)
        return web.json_response({"url": url, "name": name, "id": bucket_id})

    def _bucket_info(self, request: web.Request, namespace: str, name: str) -> web.Response:
        caller = self._caller(request)
        with self._lock:
            return web.json_response(self._bucket_json(request, self._readable_bucket(caller, namespace, name)))

    def _delete_bucket(self, request: web.Request, namespace: str, name: str) -> web.Response:
        caller = self._caller(request)
        with self._lock:
            bucket = self._writable_bucket(caller, namespace, name)
            del self._buckets[bucket.id]
        return web.json_response({})

    async def _settings(self, request: web.Request, namespace: str, name: str) -> web.Response:
        caller = self._caller(request)
        body = await _json_body(request, default={})
        if not isinstance(body, dict) or not isinstance(body.get("private"), bool):
            raise _HubError(400, "Body must be {'private': bool}")
        with self._lock:
            bucket = self._writable_bucket(caller, namespace, name)
            bucket.private = body["private"]
            bucket.updated_at = time.time()
        return web.json_response({})

    def _xet_token(self, request: web.Request, namespace: str, name: str, *, write: bool) -> web.Response:
        caller = self._caller(request)
        with self._lock:
            if write:
                self._writable_bucket(caller, namespace, name)
            else:
                self._readable_bucket(caller, namespace, name)
        expiry = int(time.time()) + TOKEN_TTL_SECONDS
        if self._cas is None:
            cas_url = f"local://{self.cas_dir}"
            access_token = "xet_stub_" + secrets.token_hex(8)
        else:
            cas_url = self._cas.url
            access_token, _ = self._cas.issue_token(write=write, service=caller.service, ttl=TOKEN_TTL_SECONDS)
        return web.json_response(
            {"accessToken": access_token, "exp": expiry, "casUrl": cas_url},
            headers={
                "X-Xet-Cas-Url": cas_url,
                "X-Xet-Access-Token": access_token,
                "X-Xet-Token-Expiration": str(expiry),
            },
        )

    async def _batch(self, request: web.Request, namespace: str, name: str) -> web.Response:
        caller = self._caller(request)
        with self._lock:
            self._writable_bucket(caller, namespace, name)
        raw = await request.read()
        operations: list[dict[str, Any]] = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                operation = json.loads(line)
            except ValueError as err:
                raise _HubError(400, f"Invalid NDJSON on line {number}: {err}") from err
            if not isinstance(operation, dict):
                raise _HubError(400, f"Line {number} is not a JSON object")
            operations.append(operation)
        processed = 0
        failed: list[dict[str, str]] = []
        for operation in operations:
            error = self._apply(namespace, name, operation)
            if error is None:
                processed += 1
            else:
                failed.append({"path": str(operation.get("path")), "error": error})
        status = 422 if failed and processed == 0 else 200
        return web.json_response({"success": not failed, "processed": processed, "failed": failed}, status=status)

    def _apply(self, namespace: str, name: str, operation: Mapping[str, Any]) -> str | None:
        """Apply one batch operation; return an error string instead of raising."""
        kind = operation.get("type")
        path = operation.get("path")
        if not _valid_file_path(path):
            return f"Invalid path {path!r}"
        assert isinstance(path, str)
        if kind == "deleteFile":
            with self._lock:
                bucket = self._buckets.get(f"{namespace}/{name}")
                if bucket is None:
                    return "Bucket was deleted"
                bucket.files.pop(path, None)
                bucket.updated_at = time.time()
            return None
        if kind not in ("addFile", "copyFile"):
            return f"Unknown operation type {kind!r}"
        xet_hash = operation.get("xetHash")
        if not isinstance(xet_hash, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", xet_hash):
            return f"Invalid xetHash {xet_hash!r}"
        size = self._shards.size_of(xet_hash)
        if size is None:
            return f"Xet hash {xet_hash} not found in storage"
        mtime = operation.get("mtime")
        now = time.time()
        record = _File(
            xet_hash=xet_hash.lower(),
            size=size,
            mtime=int(mtime) if isinstance(mtime, (int, float)) else int(now * 1000),
            uploaded_at=now,
            content_type=operation.get("contentType") if isinstance(operation.get("contentType"), str) else None,
        )
        with self._lock:
            bucket = self._buckets.get(f"{namespace}/{name}")
            if bucket is None:
                return "Bucket was deleted"
            bucket.files[path] = record
            bucket.updated_at = now
        return None

    @staticmethod
    def _file_json(path: str, record: _File) -> dict[str, Any]:
        return {
            "type": "file",
            "path": path,
            "size": record.size,
            "xetHash": record.xet_hash,
            "mtime": _iso(record.mtime / 1000),
            "uploadedAt": _iso(record.uploaded_at),
        }

    async def _paths_info(self, request: web.Request, namespace: str, name: str) -> web.Response:
        caller = self._caller(request)
        body = await _json_body(request, default=None)
        paths = body.get("paths") if isinstance(body, dict) else None
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise _HubError(400, "Body must be {'paths': [str, ...]}")
        if len(paths) > 1000:
            raise _HubError(400, "At most 1000 paths per request")
        with self._lock:
            bucket = self._readable_bucket(caller, namespace, name)
            found = [self._file_json(p, bucket.files[p]) for p in dict.fromkeys(paths) if p in bucket.files]
        return web.json_response(found)

    def _tree(self, request: web.Request, namespace: str, name: str, prefix: str) -> web.Response:
        caller = self._caller(request)
        recursive = request.query.get("recursive", "false").lower() in ("1", "true")
        try:
            limit = max(1, min(int(request.query.get("limit", self.page_size)), self.page_size))
            offset = max(0, int(request.query.get("cursor", "0")))
        except ValueError as err:
            raise _HubError(400, f"Invalid pagination parameter: {err}") from err
        with self._lock:
            bucket = self._readable_bucket(caller, namespace, name)
            entries = _tree_entries(bucket.files, prefix, recursive)
            page = [
                self._file_json(path, record) if record is not None else _dir_json(path, uploaded)
                for path, record, uploaded in entries[offset : offset + limit]
            ]
        headers: dict[str, str] = {}
        if offset + limit < len(entries):
            query = {k: v for k, v in request.query.items() if k not in ("cursor", "limit")}
            query.update(limit=str(limit), cursor=str(offset + limit))
            next_url = f"{_base_url(request)}{request.rel_url.raw_path}?{urlencode(query)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return web.json_response(page, headers=headers)

    def _resolve(self, request: web.Request, namespace: str, name: str, path: str) -> web.StreamResponse:
        caller = self._caller(request)
        with self._lock:
            bucket = self._readable_bucket(caller, namespace, name)
            record = bucket.files.get(path)
        if record is None:
            raise _HubError(404, "Entry not found", code="EntryNotFound")
        if request.method == "GET":
            # Serving bytes would mean reassembling xorbs; the client never asks for it.
            raise _HubError(501, "GET on resolve is not emulated; downloads go through xet")
        base = _base_url(request)
        quoted_id = f"{quote(namespace, safe='')}/{quote(name, safe='')}"
        return web.Response(
            status=200,
            headers={
                "X-Xet-Hash": record.xet_hash,
                "X-Linked-Size": str(record.size),
                "X-Linked-Etag": f'"{record.xet_hash}"',
                "ETag": f'"{record.xet_hash}"',
                "Link": f'<{base}/api/buckets/{quoted_id}/xet-read-token>; rel="xet-auth"',
                "Accept-Ranges": "bytes",
            },
        )

    # ---- control endpoints (standalone mode) ----------------------------------------------------

    async def _control(self, request: web.Request) -> web.Response:
        """``/__stub__/...``: drive the stand-in from another process.

        * ``POST /__stub__/fail`` ``{"count","status"?,"retry_after"?,"paths"?,"methods"?}``
        * ``POST /__stub__/users`` ``{"name","token","role"?,"orgs"?}``
        * ``POST /__stub__/buckets`` ``{"id","private"?}`` (seed a bucket)
        * ``POST /__stub__/private`` ``{"bucket","private"}``
        * ``GET /__stub__/files?bucket=ns/name``
        * ``GET /__stub__/requests``, ``DELETE /__stub__/requests``
        * ``GET /__stub__/health``

        Going offline cannot be an HTTP call (nothing would answer the call to come back online);
        a benchmark that needs refused connections stops and restarts the process on the same port.
        """
        action = request.path[len("/__stub__/") :]
        method = request.method
        if action == "health" and method == "GET":
            return web.json_response({"ok": True, "endpoint": self.endpoint})
        if action == "requests" and method == "GET":
            return web.json_response([list(r) for r in self.requests])
        if action == "requests" and method == "DELETE":
            self.clear_requests()
            return web.json_response({})
        if action == "files" and method == "GET":
            return web.json_response(self.files(request.query.get("bucket", "")))
        body = await _json_body(request, default={})
        if not isinstance(body, dict):
            raise _HubError(400, "Body must be a JSON object")
        try:
            if action == "fail" and method == "POST":
                self.fail_next(
                    int(body["count"]),
                    status=int(body.get("status", 503)),
                    retry_after=None if body.get("retry_after") is None else int(body["retry_after"]),
                    paths=body.get("paths"),
                    methods=body.get("methods"),
                )
                return web.json_response({"pending": self.pending_failures()})
            if action == "users" and method == "POST":
                self.add_user(str(body["name"]), str(body["token"]), body.get("role", "write"), body.get("orgs", ()))
                return web.json_response({})
            if action == "buckets" and method == "POST":
                self.create_bucket(str(body["id"]), private=bool(body.get("private", True)))
                return web.json_response({})
            if action == "private" and method == "POST":
                self.set_private(str(body["bucket"]), bool(body["private"]))
                return web.json_response({})
        except (KeyError, TypeError, ValueError) as err:
            raise _HubError(400, f"Bad control request: {err!r}") from err
        raise _HubError(404, f"Unknown control endpoint {method} {request.path}")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _method_not_allowed() -> web.Response:
    return _HubError(405, "Method not allowed").response()


def _base_url(request: web.Request) -> str:
    """The origin the client used, so URLs we hand back (Link, url) match its endpoint string."""
    return f"{request.scheme}://{request.host}"


async def _json_body(request: web.Request, *, default: Any) -> Any:
    raw = await request.read()
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except ValueError as err:
        raise _HubError(400, f"Invalid JSON body: {err}") from err


def _dir_json(path: str, uploaded_at: float) -> dict[str, Any]:
    return {"type": "directory", "path": path, "uploadedAt": _iso(uploaded_at)}


def _tree_entries(files: Mapping[str, _File], prefix: str, recursive: bool) -> list[tuple[str, _File | None, float]]:
    """Tree listing as ``(path, file-or-None-for-directory, uploaded_at)``, sorted by path.

    The prefix matches lexically (``"lo"`` matches ``logs/...``); a prefix naming a directory
    lists that directory's content. Non-recursive listings show immediate children, folding
    deeper paths into directory entries; recursive ones list every file plus every directory.
    """
    base = prefix
    if prefix and not prefix.endswith("/") and any(p.startswith(prefix + "/") for p in files):
        base = prefix + "/"
    directories: dict[str, float] = {}
    listed: dict[str, _File] = {}
    for path, record in files.items():
        if not path.startswith(base):
            continue
        rest = path[len(base) :]
        parts = rest.split("/")
        if recursive:
            listed[path] = record
            for depth in range(1, len(parts)):
                directory = base + "/".join(parts[:depth])
                directories[directory] = max(directories.get(directory, 0.0), record.uploaded_at)
        elif len(parts) == 1:
            listed[path] = record
        else:
            directory = base + parts[0]
            directories[directory] = max(directories.get(directory, 0.0), record.uploaded_at)
    entries: list[tuple[str, _File | None, float]] = [(d, None, t) for d, t in directories.items()]
    entries.extend((p, r, r.uploaded_at) for p, r in listed.items())
    entries.sort(key=lambda entry: entry[0])
    return entries


# --------------------------------------------------------------------------------------------------
# Fixture helpers (plain functions; conftest wires them)
# --------------------------------------------------------------------------------------------------

DEFAULT_USERS: tuple[tuple[str, str, Role], ...] = (
    ("alice", "hf_alice_write", "write"),
    ("alice", "hf_alice_read", "read"),
    ("bob", "hf_bob_write", "write"),
)


@contextlib.contextmanager
def running_hub(
    cas_dir: Path | str,
    users: Iterable[tuple[str, str, Role]] = DEFAULT_USERS,
    **kwargs: Any,
) -> Iterator[HubStub]:
    """A started ``HubStub`` with ``users`` registered, stopped on exit."""
    hub = HubStub(cas_dir, **kwargs)
    for name, token, role in users:
        hub.add_user(name, token, role=role)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


def hub_fixture(tmp_path: Path) -> Iterator[HubStub]:
    """Body of a ``hub`` pytest fixture: ``hub = pytest.fixture(name="hub")(hub_fixture)``."""
    with running_hub(tmp_path / "cas") as hub:
        yield hub


# --------------------------------------------------------------------------------------------------
# Standalone entry point
# --------------------------------------------------------------------------------------------------


def _parse_user(spec: str) -> tuple[str, str, Role]:
    parts = spec.split(":")
    if len(parts) == 2:
        return parts[0], parts[1], "write"
    if len(parts) == 3 and parts[2] in ("read", "write"):
        role: Role = "read" if parts[2] == "read" else "write"
        return parts[0], parts[1], role
    raise argparse.ArgumentTypeError(f"--user expects NAME:TOKEN[:read|write], got {spec!r}")


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in in the foreground until SIGINT/SIGTERM; print the endpoint when ready."""
    parser = argparse.ArgumentParser(description="Hugging Face Hub bucket API stand-in (with its xet CAS).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cas", required=True, type=Path, help="directory the CAS stores xorbs and shards in")
    parser.add_argument(
        "--cas-mode", choices=("http", "local"), help="http: serve the xet CAS API (default); local: local:// CAS"
    )
    parser.add_argument("--user", action="append", default=[], type=_parse_user, metavar="NAME:TOKEN[:ROLE]")
    parser.add_argument("--bucket", action="append", default=[], metavar="NS/NAME", help="pre-create (private)")
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args(argv)

    hub = HubStub(args.cas, host=args.host, port=args.port, page_size=args.page_size, cas=args.cas_mode)
    for name, token, role in args.user:
        hub.add_user(name, token, role=role)
    for bucket_id in args.bucket:
        hub.create_bucket(bucket_id, private=True)
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    hub.start()
    print(hub.endpoint, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
