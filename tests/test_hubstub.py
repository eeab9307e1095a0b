"""The Hub stand-in must behave like the Hub *as the real client sees it*.

Every test drives the genuine huggingface_hub + hf_xet against ``tests.hubstub``; nothing is mocked.
If these pass, tracekeeper's own tests can trust that an upload which succeeds against the stand-in
would have produced the same requests against the Hub, and that the bytes really round-trip.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import BucketBatchError, BucketNotFoundError, HfHubHTTPError
from huggingface_hub.utils import RateLimitInfo, parse_ratelimit_headers

# Importing tests.hubstub bounds hf_xet's retries (HF_XET_CLIENT_RETRY_*) in os.environ; that is in
# time because huggingface_hub only imports hf_xet on the first transfer.
from tests.hubstub import (
    EMPTY_XET_HASH,
    HubStub,
    RequestRecord,
    client_env,
    crc64_nvme,
    hub_fixture,
    parse_shard_file_sizes,
    parse_xorb_chunks,
    running_hub,
)

ALICE = "hf_alice_write"
ALICE_READ = "hf_alice_read"
BUCKET = "alice/agent-traces"
BATCH_PATH = f"/api/buckets/{BUCKET}/batch"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _library_http_client() -> None:
    """These tests check the stand-in against huggingface_hub's own client, retries included. An
    HfStore built earlier in the same process (test_worker_loop, test_hub_store) installed its
    client process-wide (stores/hf.py `_configure_client`: retryable answers raise at once), and
    test_injected_503s_on_batch_are_retried failed after it. Put the library's default back
    (huggingface_hub/utils/_http.py `default_client_factory`, not exported), and let the next
    HfStore install its own again."""
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    from tracekeeperd.stores import hf

    set_client_factory(default_client_factory)
    hf._client_configured = False


@pytest.fixture(name="hub")
def _hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStub]:
    for stub in hub_fixture(tmp_path):
        # The client reads these at import or session start; explicit endpoint/token on HfApi below
        # are what actually matter, the env keeps anything that falls back to it pointed here.
        monkeypatch.setenv("HF_ENDPOINT", stub.endpoint)
        monkeypatch.setenv("HF_TOKEN", ALICE)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        yield stub


@pytest.fixture
def api(hub: HubStub) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=ALICE)


@pytest.fixture
def bucket(api: HfApi) -> str:
    api.create_bucket(BUCKET, private=True, exist_ok=True)
    return BUCKET


def transcript(n_bytes: int, seed: int = 0) -> bytes:
    """Deterministic JSONL that looks like a transcript (compressible, non-repeating)."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    total = 0
    i = 0
    while total < n_bytes:
        line = json.dumps({"i": i, "role": "assistant", "text": f"{rng.getrandbits(128):x}"}).encode() + b"\n"
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)[:n_bytes]


def statuses(hub: HubStub, method: str, path: str) -> list[int]:
    return [r.status for r in hub.requests if r.method == method and r.path == path]


def test_create_bucket_twice_is_idempotent_and_private(hub: HubStub, api: HfApi) -> None:
    first = api.create_bucket(BUCKET, private=True, exist_ok=True)
    second = api.create_bucket(BUCKET, private=True, exist_ok=True)

    assert first.bucket_id == second.bucket_id == BUCKET
    assert first.url == f"{hub.endpoint}/buckets/{BUCKET}"
    assert statuses(hub, "POST", f"/api/buckets/{BUCKET}") == [200, 409]
    info = api.bucket_info(BUCKET)
    assert info.private is True
    assert (info.size, info.total_files) == (0, 0)
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_bucket(BUCKET, private=True)
    assert excinfo.value.response.status_code == 409


def test_whoami_reports_user_and_role(hub: HubStub) -> None:
    assert HfApi(endpoint=hub.endpoint, token=ALICE).whoami()["auth"]["accessToken"]["role"] == "write"
    me = HfApi(endpoint=hub.endpoint, token=ALICE_READ).whoami()
    assert me["name"] == "alice"
    assert me["auth"]["accessToken"]["role"] == "read"


def test_add_file_and_bytes_then_paths_info_and_tree(hub: HubStub, api: HfApi, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "session.jsonl"
    local.write_bytes(transcript(10_000, seed=1))
    inline = b'{"hello": "world"}\n'

    api.batch_bucket_files(bucket, add=[(str(local), "claude/s1.jsonl"), (inline, "codex/deep/s2.jsonl")])

    infos = {f.path: f for f in api.get_bucket_paths_info(bucket, ["claude/s1.jsonl", "codex/deep/s2.jsonl", "nope"])}
    assert set(infos) == {"claude/s1.jsonl", "codex/deep/s2.jsonl"}
    assert infos["claude/s1.jsonl"].size == 10_000
    assert infos["codex/deep/s2.jsonl"].size == len(inline)
    stored = hub.files(bucket)
    assert {p: (f["size"], f["xet_hash"]) for p, f in stored.items()} == {
        p: (i.size, i.xet_hash) for p, i in infos.items()
    }
    # mtime of a file upload is the local file's mtime, in ms
    assert stored["claude/s1.jsonl"]["mtime"] == int(local.stat().st_mtime * 1000)

    recursive = {(e.type, e.path) for e in api.list_bucket_tree(bucket, recursive=True)}
    assert recursive == {
        ("directory", "claude"),
        ("directory", "codex"),
        ("directory", "codex/deep"),
        ("file", "claude/s1.jsonl"),
        ("file", "codex/deep/s2.jsonl"),
    }
    assert {(e.type, e.path) for e in api.list_bucket_tree(bucket)} == {
        ("directory", "claude"),
        ("directory", "codex"),
    }
    assert [e.path for e in api.list_bucket_tree(bucket, prefix="codex", recursive=True)] == [
        "codex/deep",
        "codex/deep/s2.jsonl",
    ]
    info = api.bucket_info(bucket)
    assert (info.size, info.total_files) == (10_000 + len(inline), 2)

    api.batch_bucket_files(bucket, delete=["codex/deep/s2.jsonl"])
    assert set(hub.files(bucket)) == {"claude/s1.jsonl"}


def test_download_round_trip_and_append_reupload(hub: HubStub, api: HfApi, bucket: str) -> None:
    data = transcript(2_000_000, seed=2)
    api.batch_bucket_files(bucket, add=[(data, "claude/big.jsonl")])
    assert hub.files(bucket)["claude/big.jsonl"]["size"] == len(data)
    assert hub.read_file(bucket, "claude/big.jsonl") == data

    xorbs = hub.cas_dir / "xet" / "xorbs"
    stored_before = sum(p.stat().st_size for p in xorbs.rglob("*") if p.is_file())
    grown = data + transcript(100_000, seed=3)
    api.batch_bucket_files(bucket, add=[(grown, "claude/big.jsonl")])
    stored_after = sum(p.stat().st_size for p in xorbs.rglob("*") if p.is_file())

    assert hub.files(bucket)["claude/big.jsonl"]["size"] == len(grown)
    assert api.get_bucket_file_metadata(bucket, "claude/big.jsonl").size == len(grown)
    assert hub.read_file(bucket, "claude/big.jsonl") == grown
    # Chunk dedup: re-uploading a grown file stores about the appended bytes, not the whole file.
    assert stored_after - stored_before < len(grown) // 4


def test_empty_file_round_trips(hub: HubStub, api: HfApi, bucket: str) -> None:
    api.batch_bucket_files(bucket, add=[(b"", "empty.jsonl")])
    stored = hub.files(bucket)["empty.jsonl"]
    assert (stored["size"], stored["xet_hash"]) == (0, EMPTY_XET_HASH)
    assert hub.read_file(bucket, "empty.jsonl") == b""


def test_sizes_come_from_the_shards_hf_xet_wrote(hub: HubStub, api: HfApi, bucket: str) -> None:
    api.batch_bucket_files(bucket, add=[(b"a" * 12345, "a.txt"), (transcript(70_000, seed=4), "b.txt")])
    from_shards: dict[str, int] = {}
    for shard in (hub.cas_dir / "xet" / "xorbs" / "shards").glob("*.mdb"):
        from_shards.update(parse_shard_file_sizes(shard.read_bytes()))
    for stored in hub.files(bucket).values():
        assert from_shards[stored["xet_hash"]] == stored["size"]


def test_unknown_xet_hash_is_rejected(hub: HubStub, api: HfApi, bucket: str) -> None:
    with pytest.raises(BucketBatchError) as excinfo:
        api.batch_bucket_files(bucket, copy=[("bucket", bucket, "ab" * 32, "ghost.jsonl")])
    assert excinfo.value.failures[0]["path"] == "ghost.jsonl"
    assert statuses(hub, "POST", BATCH_PATH) == [422]
    assert hub.files(bucket) == {}


def test_wrong_token_and_anonymous_access(hub: HubStub, api: HfApi, bucket: str) -> None:
    wrong = HfApi(endpoint=hub.endpoint, token="hf_not_a_token")
    with pytest.raises(HfHubHTTPError) as whoami_err:
        wrong.whoami()
    assert whoami_err.value.response.status_code == 401

    # Like the Hub, an unknown token is refused as such, even on a bucket: not "bucket not found".
    with pytest.raises(HfHubHTTPError) as info_err:
        wrong.bucket_info(bucket)
    assert not isinstance(info_err.value, BucketNotFoundError)
    assert info_err.value.response.status_code == 401
    assert info_err.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"

    anonymous = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(BucketNotFoundError) as anon_err:
        anonymous.bucket_info(bucket)
    assert anon_err.value.response.status_code == 401
    assert anon_err.value.response.headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(BucketNotFoundError):
        HfApi(endpoint=hub.endpoint, token="hf_bob_write").bucket_info(bucket)  # 404 for another user

    hub.set_private(bucket, False)
    assert anonymous.bucket_info(bucket).private is False
    assert api.bucket_info(bucket).private is False


def test_read_only_token_cannot_write(hub: HubStub, api: HfApi, bucket: str) -> None:
    api.batch_bucket_files(bucket, add=[(b"kept\n", "kept.jsonl")])
    hub.clear_requests()
    reader = HfApi(endpoint=hub.endpoint, token=ALICE_READ)

    # hf_xet fetches the write token itself and reports the 403 as a builtin ConnectionError.
    with pytest.raises(ConnectionError):
        reader.batch_bucket_files(bucket, add=[(b"nope\n", "nope.jsonl")])
    assert statuses(hub, "GET", f"/api/buckets/{bucket}/xet-write-token") == [403]
    assert statuses(hub, "POST", BATCH_PATH) == []

    with pytest.raises(HfHubHTTPError) as delete_err:
        reader.batch_bucket_files(bucket, delete=["kept.jsonl"])
    assert delete_err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as create_err:
        reader.create_bucket("alice/another", private=True)
    assert create_err.value.response.status_code == 403
    # exist_ok falls back to bucket_info on 403, as the client does against the Hub
    assert reader.create_bucket(bucket, private=True, exist_ok=True).bucket_id == bucket

    assert set(hub.files(bucket)) == {"kept.jsonl"}
    assert [f.path for f in reader.get_bucket_paths_info(bucket, ["kept.jsonl"])] == ["kept.jsonl"]
    assert hub.read_file(bucket, "kept.jsonl", token=ALICE_READ) == b"kept\n"


def test_injected_503s_on_batch_are_retried(hub: HubStub, api: HfApi, bucket: str) -> None:
    # Retry-After: 0 makes the client wait 1 s per retry instead of 1 s then 2 s.
    hub.fail_next(2, status=503, retry_after=0, paths=[BATCH_PATH])
    api.batch_bucket_files(bucket, add=[(b"survived\n", "retry.jsonl")])

    assert statuses(hub, "POST", BATCH_PATH) == [503, 503, 200]
    assert hub.pending_failures() == 0
    assert hub.read_file(bucket, "retry.jsonl") == b"survived\n"


def test_every_answer_reports_the_rate_limit_window_like_the_hub(hub: HubStub, bucket: str) -> None:
    hub.set_rate_limit("api", 10)
    hub.reset_rate_limits()  # the fixture's create_bucket counted too
    auth = {"Authorization": f"Bearer {ALICE}"}
    first = httpx2.get(f"{hub.endpoint}/api/buckets/{bucket}", headers=auth)
    second = httpx2.get(f"{hub.endpoint}/api/buckets/{bucket}/tree", headers=auth)
    assert first.status_code == second.status_code == 200
    one, two = parse_ratelimit_headers(first.headers), parse_ratelimit_headers(second.headers)
    assert one is not None and two is not None
    assert (one.resource_type, one.limit, one.window_seconds) == ("api", 10, 300)
    assert (one.remaining, two.remaining) == (9, 8)  # one window per caller, counted down
    assert 0 < two.reset_in_seconds <= 300
    assert second.headers["RateLimit-Policy"] == '"fixed window";"api";q=10;w=300'


def test_a_used_up_window_answers_429_the_way_the_hub_does(hub: HubStub, api: HfApi, bucket: str) -> None:
    hub.exhaust_rate_limit("api", resets_in=55)
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.bucket_info(bucket)
    response = excinfo.value.response
    assert response.status_code == 429
    assert "Retry-After" not in response.headers  # only the IETF-draft headers, as on the Hub
    info = parse_ratelimit_headers(response.headers)
    assert info is not None and info.resource_type == "api" and info.remaining == 0
    assert info.reset_in_seconds in (54, 55)
    assert info == RateLimitInfo("api", 0, info.reset_in_seconds, 500, 300)
    # huggingface_hub turns them into its own message (utils/_http.py, hf_raise_for_status).
    assert f"Retry after {info.reset_in_seconds} seconds (0/500 requests remaining" in str(excinfo.value)
    assert (excinfo.value.server_message or "").startswith(
        "We had to rate limit you, you hit the quota of 500 api requests per 5 minutes period."
    )
    hub.reset_rate_limits()
    assert api.bucket_info(bucket).private is True


def test_an_injected_429_carries_the_rate_limit_headers(hub: HubStub, bucket: str) -> None:
    hub.fail_next(1, status=429, paths=[BATCH_PATH], reset_in=42)
    answer = httpx2.post(f"{hub.endpoint}{BATCH_PATH}", headers={"Authorization": f"Bearer {ALICE}"}, content=b"")
    assert answer.status_code == 429
    assert answer.headers["RateLimit"] == '"api";r=0;t=42'
    assert "Retry-After" not in answer.headers


def test_offline_refuses_then_online_on_same_port(hub: HubStub, api: HfApi, bucket: str) -> None:
    endpoint = hub.endpoint
    api.bucket_info(bucket)  # leaves a keep-alive connection open: offline must drop it too

    hub.go_offline()
    with pytest.raises(httpx2.ConnectError):
        api.bucket_info(bucket)
    # A transfer fails too (the xet retries are bounded: HF_XET_CLIENT_RETRY_*); how fast is bench/'s business.
    with pytest.raises(ConnectionError):
        api.batch_bucket_files(bucket, add=[(b"lost\n", "lost.jsonl")])
    assert statuses(hub, "POST", BATCH_PATH) == []

    hub.go_online()
    assert hub.endpoint == endpoint
    assert api.bucket_info(bucket).private is True
    api.batch_bucket_files(bucket, add=[(b"back\n", "back.jsonl")])
    assert hub.read_file(bucket, "back.jsonl") == b"back\n"


def test_tree_pagination_follows_link_header(tmp_path: Path) -> None:
    with running_hub(tmp_path / "cas", page_size=2) as hub:
        api = HfApi(endpoint=hub.endpoint, token=ALICE)
        api.create_bucket(BUCKET, private=True)
        paths = [f"s/{i}.jsonl" for i in range(5)]
        api.batch_bucket_files(BUCKET, add=[(f"{i}\n".encode(), p) for i, p in enumerate(paths)])
        listed = [e.path for e in api.list_bucket_tree(BUCKET, recursive=True) if e.type == "file"]
        assert listed == paths
        assert statuses(hub, "GET", f"/api/buckets/{BUCKET}/tree") == [200, 200, 200]


def test_list_and_delete_buckets(hub: HubStub, api: HfApi, bucket: str) -> None:
    api.create_bucket("alice/public-one", private=False)
    assert sorted(b.id for b in api.list_buckets()) == ["alice/agent-traces", "alice/public-one"]
    bob = HfApi(endpoint=hub.endpoint, token="hf_bob_write")
    assert [b.id for b in bob.list_buckets("alice")] == ["alice/public-one"]
    api.delete_bucket("alice/public-one")
    api.delete_bucket("alice/public-one", missing_ok=True)
    assert hub.bucket_ids() == [bucket]


def test_requests_log_excludes_read_file_traffic(hub: HubStub, api: HfApi, bucket: str) -> None:
    api.batch_bucket_files(bucket, add=[(b"x\n", "x.jsonl")])
    before, cas_before = hub.requests, hub.cas_requests
    hub.fail_next(1, status=500)  # read_file must not consume injected failures either
    assert hub.read_file(bucket, "x.jsonl") == b"x\n"
    assert hub.requests == before
    assert hub.cas_requests == cas_before  # its reconstruction and xorb fetches neither
    assert hub.pending_failures() == 1
    assert before[-1] == RequestRecord("POST", BATCH_PATH, 200)


def test_standalone_process_and_http_control(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.hubstub",
            "--port",
            "0",
            "--cas",
            str(tmp_path / "cas"),
            "--user",
            f"alice:{ALICE}",
            "--bucket",
            BUCKET,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")

        def call(method: str, path: str, body: object = None, token: str | None = ALICE) -> tuple[int, bytes]:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(endpoint + path, data=data, method=method)
            if token is not None:
                request.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

        assert call("GET", "/__stub__/health")[0] == 200
        status, body = call("POST", "/__stub__/fail", {"count": 1, "status": 503, "retry_after": 3})
        assert (status, json.loads(body)) == (200, {"pending": 1})
        assert call("GET", f"/api/buckets/{BUCKET}")[0] == 503
        status, body = call("GET", f"/api/buckets/{BUCKET}")
        assert status == 200 and json.loads(body)["private"] is True
        assert call("POST", "/__stub__/private", {"bucket": BUCKET, "private": False})[0] == 200
        assert json.loads(call("GET", f"/api/buckets/{BUCKET}", token=None)[1])["private"] is False
        assert json.loads(call("GET", "/__stub__/requests")[1]) == [
            ["GET", f"/api/buckets/{BUCKET}", 503],
            ["GET", f"/api/buckets/{BUCKET}", 200],
            ["GET", f"/api/buckets/{BUCKET}", 200],
        ]
        env = client_env(endpoint, ALICE, tmp_path / "hf_home")
        assert (env["HF_ENDPOINT"], env["HF_TOKEN"]) == (endpoint, ALICE)
        assert env["HF_XET_CLIENT_RETRY_MAX_ATTEMPTS"] == "2"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


# --------------------------------------------------------------------------------------------------
# The xet CAS over HTTP: hf_xet's RemoteClient against a server as strict as the real one
# --------------------------------------------------------------------------------------------------


def xet_token(hub: HubStub, bucket: str, token: str = ALICE, kind: str = "write") -> tuple[str, str]:
    """(casUrl, accessToken) from the Hub's xet token endpoint, as hf_xet gets them."""
    answer = httpx2.get(
        f"{hub.endpoint}/api/buckets/{bucket}/xet-{kind}-token", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200
    body = answer.json()
    return str(body["casUrl"]), str(body["accessToken"])


def small_xorb(payload: bytes) -> bytes:
    """One uncompressed chunk: header (version 0, length u24, scheme 0 = none, length u24), data."""
    size = len(payload).to_bytes(3, "little")
    return b"\x00" + size + b"\x00" + size + payload


def cas_paths(hub: HubStub) -> list[tuple[str, str, int]]:
    """The CAS requests with hashes and grant ids folded, in order: ('POST', '/v1/xorb-grants', 201)."""
    return [(record.method, "/".join(record.path.split("/")[:3]), record.status) for record in hub.cas_requests]


def cas_uploads(hub: HubStub) -> list[tuple[str, str, int]]:
    """``cas_paths`` without the global-dedup queries (``/v1/chunks``): how many hf_xet sends is
    its dedup heuristics' business (min_spacing_between_global_dedup_queries), not the upload path's."""
    return [request for request in cas_paths(hub) if request[1] != "/v1/chunks"]


def test_an_upload_is_a_grant_a_put_to_its_url_a_commit_then_the_shard(hub: HubStub, api: HfApi, bucket: str) -> None:
    """hf_xet 1.8.0's RemoteClient path (xet-core xet_client/README.md "Xorb uploads"): the stand-in
    hands out an HTTP casUrl, so none of this would be seen with the local:// simulation client."""
    data = transcript(300_000, seed=11)
    api.batch_bucket_files(bucket, add=[(data, "s.jsonl")])
    uploads = cas_uploads(hub)
    assert uploads == [
        ("POST", "/v1/xorb-grants", 201),
        ("PUT", "/presigned/grants", 200),
        ("POST", "/v1/xorb-commits", 200),
        ("POST", "/v2/shards", 200),
    ]
    stored = [p for p in (hub.cas_dir / "xet" / "xorbs" / "default").iterdir()]
    assert len(stored) == 1 and sum(c.raw for c in parse_xorb_chunks(stored[0].read_bytes())) == len(data)
    assert hub.files(bucket)["s.jsonl"]["size"] == len(data)


def test_a_grant_checks_the_length_and_crc64_nvme_of_what_is_put(hub: HubStub, bucket: str) -> None:
    # The CRC catalogue's check value for CRC-64/NVME ("123456789"), the algorithm hf_xet names.
    assert crc64_nvme(b"123456789") == 0xAE8B14860A799888
    assert crc64_nvme(b"6789", crc64_nvme(b"12345")) == crc64_nvme(b"123456789")
    cas, token = xet_token(hub, bucket)
    auth = {"Authorization": f"Bearer {token}"}
    xorb = small_xorb(b"hello xet\n" * 20)
    key = "default/" + "ab" * 32

    def grant(length: int, checksum: int) -> dict[str, object]:
        body = {"length": length, "checksum": {"algo": "crc64nvme", "value": str(checksum)}}
        answer = httpx2.post(f"{cas}/v1/xorb-grants/{key}", headers=auth, json=body)
        assert answer.status_code == 201
        granted: dict[str, object] = answer.json()
        assert set(granted) == {"id", "method", "url", "headers"} and granted["method"] == "PUT"
        return granted

    def put(granted: dict[str, object], body: bytes, extra: dict[str, str] | None = None) -> httpx2.Response:
        headers = dict(granted["headers"])  # type: ignore[call-overload]
        return httpx2.put(str(granted["url"]), headers={**headers, **(extra or {})}, content=body)

    bad_crc = grant(len(xorb), crc64_nvme(xorb) ^ 1)
    assert put(bad_crc, xorb).status_code == 400
    short = grant(len(xorb) + 5, crc64_nvme(xorb))
    assert put(short, xorb).status_code == 400
    good = grant(len(xorb), crc64_nvme(xorb))
    assert put(good, xorb, {"Authorization": auth["Authorization"]}).status_code == 400  # no CAS credentials
    headers_missing = httpx2.put(str(good["url"]), content=xorb)
    assert headers_missing.status_code == 403
    # Nothing usable was put for these grants: committing them finds no data (404).
    for granted in (bad_crc, short):
        assert httpx2.post(f"{cas}/v1/xorb-commits/{key}/grant/{granted['id']}", headers=auth).status_code == 404
    assert put(good, xorb).status_code == 200
    assert put(good, xorb).status_code == 412  # already uploaded: the client counts it as done
    committed = httpx2.post(f"{cas}/v1/xorb-commits/{key}/grant/{good['id']}", headers=auth)
    assert (committed.status_code, committed.json()) == (200, {"was_inserted": True})
    again = {"length": len(xorb), "checksum": {"algo": "crc64nvme", "value": str(crc64_nvme(xorb))}}
    assert httpx2.post(f"{cas}/v1/xorb-grants/{key}", headers=auth, json=again).status_code == 200  # stored
    bad_algo = {"length": len(xorb), "checksum": {"algo": "crc32", "value": "1"}}
    other = f"{cas}/v1/xorb-grants/default/{'cd' * 32}"
    assert httpx2.post(other, headers=auth, json=bad_algo).status_code == 400


def test_an_expired_or_unknown_grant_is_403_and_a_bare_commit_404(hub: HubStub, bucket: str) -> None:
    cas, token = xet_token(hub, bucket)
    auth = {"Authorization": f"Bearer {token}"}
    xorb = small_xorb(b"late\n" * 30)
    key = "default/" + "cd" * 32
    body = {"length": len(xorb), "checksum": {"algo": "crc64nvme", "value": str(crc64_nvme(xorb))}}
    granted = httpx2.post(f"{cas}/v1/xorb-grants/{key}", headers=auth, json=body).json()
    hub.cas.expire_grants()
    assert httpx2.put(granted["url"], headers=granted["headers"], content=xorb).status_code == 403
    unknown = granted["url"].rsplit("/", 1)[0] + "/" + "0" * 32
    assert httpx2.put(unknown, headers=granted["headers"], content=xorb).status_code == 403
    assert httpx2.post(f"{cas}/v1/xorb-commits/{key}/grant/{granted['id']}", headers=auth).status_code == 404
    assert httpx2.post(f"{cas}/v1/xorb-commits/{key}/grant/{'1' * 32}", headers=auth).status_code == 404


def test_the_cas_wants_a_xet_token_and_a_write_one_to_upload(hub: HubStub, bucket: str) -> None:
    api_write = HfApi(endpoint=hub.endpoint, token=ALICE)
    api_write.batch_bucket_files(bucket, add=[(b"present\n", "p.jsonl")])
    cas, read_token = xet_token(hub, bucket, ALICE_READ, kind="read")
    body = {"length": 10, "checksum": {"algo": "crc64nvme", "value": "1"}}
    grant_url = f"{cas}/v1/xorb-grants/default/{'ef' * 32}"
    assert httpx2.post(grant_url, json=body).status_code == 401
    assert httpx2.post(grant_url, json=body, headers={"Authorization": "Bearer xet_forged"}).status_code == 401
    assert httpx2.post(grant_url, json=body, headers={"Authorization": f"Bearer {read_token}"}).status_code == 403
    _, write_token = xet_token(hub, bucket)
    elsewhere = f"{cas}/v1/xorb-grants/elsewhere/{'ef' * 32}"  # only the client's default prefix exists
    assert httpx2.post(elsewhere, json=body, headers={"Authorization": f"Bearer {write_token}"}).status_code == 400
    file_hash = hub.files(bucket)["p.jsonl"]["xet_hash"]
    read = httpx2.get(f"{cas}/v2/reconstructions/{file_hash}", headers={"Authorization": f"Bearer {read_token}"})
    assert read.status_code == 200


def test_without_grants_hf_xet_falls_back_to_the_direct_xorb_upload(hub: HubStub, api: HfApi, bucket: str) -> None:
    """A 404 from the grant endpoint makes the client POST /v1/xorbs (xet-core README "Xorb uploads")."""
    hub.cas.grants_enabled = False
    data = transcript(200_000, seed=12)
    api.batch_bucket_files(bucket, add=[(data, "direct.jsonl")])
    uploads = cas_uploads(hub)
    assert uploads == [("POST", "/v1/xorb-grants", 404), ("POST", "/v1/xorbs", 200), ("POST", "/v2/shards", 200)]
    assert hub.read_file(bucket, "direct.jsonl") == data


def test_a_download_reads_a_v2_reconstruction_and_xorb_ranges(hub: HubStub, api: HfApi, bucket: str) -> None:
    data = transcript(1_500_000, seed=13)
    api.batch_bucket_files(bucket, add=[(data, "big.jsonl")])
    hub.cas.clear_requests()
    assert hub.read_file(bucket, "big.jsonl", token=ALICE) == data
    folded = cas_paths(hub)
    assert ("GET", "/v2/reconstructions", 200) in folded
    assert any(request[:2] == ("GET", "/presigned/xorbs") and request[2] in (200, 206) for request in folded)
    assert all(status < 400 for _, _, status in folded)

    cas, token = xet_token(hub, bucket, kind="read")
    file_hash = hub.files(bucket)["big.jsonl"]["xet_hash"]
    auth = {"Authorization": f"Bearer {token}"}
    ranged = httpx2.get(f"{cas}/v2/reconstructions/{file_hash}", headers={**auth, "Range": "bytes=700000-700099"})
    assert ranged.status_code == 200
    plan = ranged.json()
    assert sum(term["unpacked_length"] for term in plan["terms"]) >= 100
    assert 0 <= plan["offset_into_first_range"] < plan["terms"][0]["unpacked_length"]
    fetch = next(iter(plan["xorbs"].values()))[0]
    first = fetch["ranges"][0]["bytes"]
    piece = httpx2.get(fetch["url"], headers={"Range": f"bytes={first['start']}-{first['end']}"})
    assert piece.status_code == 206 and len(piece.content) == first["end"] - first["start"] + 1
    assert httpx2.get(fetch["url"] + "x", headers={"Range": "bytes=0-7"}).status_code == 403  # not signed
    past_end = httpx2.get(f"{cas}/v2/reconstructions/{file_hash}", headers={**auth, "Range": f"bytes={len(data)}-"})
    assert past_end.status_code == 416
    assert httpx2.get(f"{cas}/v2/reconstructions/{'0' * 63}1", headers=auth).status_code == 404


def test_a_shard_naming_xorbs_never_uploaded_is_refused(hub: HubStub, api: HfApi, bucket: str, tmp_path: Path) -> None:
    api.batch_bucket_files(bucket, add=[(transcript(50_000, seed=14), "s.jsonl")])
    (shard,) = (hub.cas_dir / "xet" / "xorbs" / "shards").glob("*.mdb")
    with running_hub(tmp_path / "other-cas") as other:
        other.create_bucket(BUCKET)
        cas, token = xet_token(other, BUCKET)
        auth = {"Authorization": f"Bearer {token}"}
        v2 = httpx2.post(f"{cas}/v2/shards", headers=auth, content=shard.read_bytes())
        frames = [json.loads(line) for line in v2.text.splitlines()]
        assert v2.status_code == 200 and frames[-1]["type"] == "error" and frames[-1]["retryable"] is False
        v1 = httpx2.post(f"{cas}/v1/shards", headers=auth, content=shard.read_bytes())
        assert v1.status_code == 400
        assert not list((other.cas_dir / "xet" / "xorbs" / "shards").glob("*.mdb"))
        assert httpx2.post(f"{cas}/v2/shards", headers=auth, content=b"not a shard").status_code == 400


def test_the_opt_in_local_cas_still_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cas="local"`` (hf_xet's own local:// simulation client) stays usable for comparisons."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with running_hub(tmp_path / "cas", cas="local") as hub:
        hub.create_bucket(BUCKET)
        data = transcript(100_000, seed=15)
        HfApi(endpoint=hub.endpoint, token=ALICE).batch_bucket_files(BUCKET, add=[(data, "l.jsonl")])
        assert hub.cas_requests == [] and hub.files(BUCKET)["l.jsonl"]["size"] == len(data)
        assert hub.read_file(BUCKET, "l.jsonl") == data


def test_a_xorb_already_stored_is_not_uploaded_again(hub: HubStub, api: HfApi, bucket: str, tmp_path: Path) -> None:
    """Another machine (another HF_HOME: no shard cache) uploading the same bytes builds the same xorb;
    its grant request answers 200, "the xorb already exists and nothing is uploaded" (xet-core
    xet_client/README.md "Xorb uploads"), and the file is still stored."""
    data = transcript(150_000, seed=16)
    (tmp_path / "same.jsonl").write_bytes(data)
    api.batch_bucket_files(bucket, add=[(data, "first.jsonl")])
    hub.cas.clear_requests()
    upload = (
        "import sys; from huggingface_hub import HfApi;"
        " HfApi().batch_bucket_files(sys.argv[1], add=[(sys.argv[2], 'second.jsonl')])"
    )
    env = client_env(hub.endpoint, ALICE, tmp_path / "other-machine")
    subprocess.run(
        [sys.executable, "-c", upload, bucket, str(tmp_path / "same.jsonl")], env=env, check=True, timeout=120
    )
    uploads = cas_uploads(hub)
    assert uploads == [("POST", "/v1/xorb-grants", 200), ("POST", "/v2/shards", 200)]
    assert hub.files(bucket)["second.jsonl"]["xet_hash"] == hub.files(bucket)["first.jsonl"]["xet_hash"]


def test_hf_xet_asks_a_new_grant_when_its_grant_expired(hub: HubStub, api: HfApi, bucket: str) -> None:
    """The grant URL's 403 is what makes the real client start a new grant (xet-core README "Xorb
    uploads": "A 403 (e.g. an expired grant) starts a new grant")."""
    hub.cas.expired_grants_ahead = 1
    data = transcript(120_000, seed=17)
    api.batch_bucket_files(bucket, add=[(data, "late.jsonl")])
    uploads = cas_uploads(hub)
    assert uploads == [
        ("POST", "/v1/xorb-grants", 201),
        ("PUT", "/presigned/grants", 403),
        ("POST", "/v1/xorb-grants", 201),
        ("PUT", "/presigned/grants", 200),
        ("POST", "/v1/xorb-commits", 200),
        ("POST", "/v2/shards", 200),
    ]
    assert hub.read_file(bucket, "late.jsonl") == data
