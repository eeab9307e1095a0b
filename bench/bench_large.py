"""Large sessions: commit -> note against a raw upload of the same file, and daemon peak memory.

    .venv/bin/python bench/bench_large.py            # 50 MB and 500 MB sessions, 1 GB for memory
    .venv/bin/python bench/bench_large.py --quick    # 20 MB and 50 MB, 100 MB for memory
    .venv/bin/python bench/bench_large.py --quick --only ratio   # the commit -> note ratio alone
    .venv/bin/python bench/bench_large.py --only ratio --sizes 500 --rounds 2   # one size
    .venv/bin/python bench/bench_large.py --quick --cas local    # hf_xet's local:// client (old figures)

Everything real, as in tests/: the installed hook, real git, the daemon as its own process, the
real huggingface_hub + hf_xet against the Hub stand-in (tests/hubstub.py), whose xet CAS is served
over HTTP on 127.0.0.1, so hf_xet runs its RemoteClient as against the Hub (`--cas local`: hf_xet's
`local://` simulation client instead, which copies each xorb again and writes synchronously: the
daemon's peak with it is not the real client's).

Per size: a transcript of that size (tests/secretgen.py: realistic lines, a secret line in 40)
is linked by a first commit (its full upload is reported, not compared). Then, round after
round, the session grows by 100 KB of fresh lines and two things are timed, in a shuffled
order each round:

* commit -> note: from `git commit` returning until `git notes show` succeeds;
* raw upload: `HfApi.batch_bucket_files(bucket, add=[(path, remote)])` of the transcript as it
  stands, the same file the daemon uploads (redacted) for that commit, to the same stand-in.
  Both sides re-send a file grown by 100 KB since their previous upload, so hf_xet's chunk
  deduplication helps both alike.

Target: median commit -> note <= 1.5x the median raw upload. Memory: the daemon's VmHWM from
/proc once its last note is written (target <= 150 MiB whatever the size), with the Hub
stand-in for each size, and with the local store for each size and a bigger session, which
shows the daemon's own memory without hf_xet's. The baseline for the Hub figure is the VmHWM
of a bare process that only uploads the same file with huggingface_hub, with the daemon's bounds
on hf_xet (tracekeeperd.stores.hf.XET_MEMORY_BOUNDS): hf_xet's transfer buffers (xorbs of up to
64 MiB, xet-core `MAX_XORB_BYTES`) are in whichever process calls it. The timed raw uploads run
with hf_xet's defaults; the bounds cannot slow the daemon's side there: a session grown by 100 KB
makes one new xorb, under both bounds (2 upload permits, hf_xet's own start; 2 runtime workers,
what hf_xet picks on a 2-core machine).
MB here is 10**6 bytes, MiB 2**20.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for entry in (str(ROOT), str(HERE)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from run import (  # noqa: E402
    TOKEN,
    daemon_running,
    git_commit,
    memory_kib,
    ms,
    session_uuid,
    temp_env,
    verdict,
    wait_note,
    with_session,
)

from tests.harness import Env, Repo, make_repo  # noqa: E402
from tests.hubstub import CAS_MODE_ENV, HubStub, running_hub  # noqa: E402
from tests.secretgen import write_transcript  # noqa: E402
from tracekeeperd.stores.hf import HUB_ENVIRONMENT, XET_MEMORY_BOUNDS  # noqa: E402

MB = 1_000_000
MiB = 1 << 20
GROWTH = 100_000
BUCKET = "alice/agent-traces"
RATIO_TARGET = 1.5
RSS_TARGET = 150 * MiB
#: --xet-env KEY=VALUE: hf_xet settings for the daemon and the bare upload alike (to try one).
XET_ENV: dict[str, str] = {}
#: --link MB/s: the stand-in's CAS reads xorb uploads at this speed (an uplink), None: unpaced.
LINK: list[float | None] = [None]


def raw_upload(hub: HubStub, path: Path, remote: str) -> float:
    """Seconds for huggingface_hub alone to upload `path` to the stand-in (the baseline)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    start = time.perf_counter()
    api.batch_bucket_files(BUCKET, add=[(path, remote)])
    return time.perf_counter() - start


_RAW_PEAK = """
import sys
from pathlib import Path
from huggingface_hub import HfApi
endpoint, token, bucket, path, remote = sys.argv[1:6]
HfApi(endpoint=endpoint, token=token).batch_bucket_files(bucket, add=[(Path(path), remote)])
status = Path("/proc/self/status").read_text().splitlines()
print(next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")))
"""


def raw_upload_peak(hub: HubStub, path: Path, remote: str) -> int:
    """Peak RSS of a bare process that only uploads `path` with huggingface_hub (the baseline for
    memory: hf_xet's own buffers, whoever calls it). The stand-in runs here, not in that process.
    It gets the daemon's bounds on hf_xet (XET_MEMORY_BOUNDS), so both sides buffer alike."""
    bounds = {key: os.environ.get(key, HUB_ENVIRONMENT[key]) for key in XET_MEMORY_BOUNDS}
    proc = subprocess.run(
        [sys.executable, "-c", _RAW_PEAK, hub.endpoint, TOKEN, BUCKET, str(path), remote],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1", **bounds, **XET_ENV},
    )
    return int(proc.stdout.split()[-1])


def append_fresh(transcript: Path, size: int, seed: int) -> None:
    """Append about `size` bytes of lines no upload has seen (a new seed: new chunks for hf_xet)."""
    extra = transcript.with_name("extra.jsonl")
    write_transcript(extra, size, seed=seed)
    with transcript.open("ab") as out:
        out.write(extra.read_bytes())
    extra.unlink()


def session(env: Env, hub: HubStub | None, size: int) -> tuple[Path, Repo]:
    if hub is not None:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_TRACE_BUCKET=BUCKET, **XET_ENV)
    repo = make_repo(env, "app").install()
    transcript = env.transcript()
    write_transcript(transcript, size, seed=size % 9973)
    with_session(repo, transcript, session_uuid(7))
    return transcript, repo


def bench_size(size: int, rounds: int) -> dict[str, float]:
    """One session of `size` bytes: first upload, then `rounds` grown commits against raw uploads."""
    with temp_env() as env, running_hub(env.root / "cas") as hub:
        hub.create_bucket(BUCKET, private=True)
        if hub.cas_mode == "http" and LINK[0] is not None:
            hub.cas.upload_bytes_per_second = LINK[0] * MB
        os.environ["HF_HOME"] = str(env.root / "bench-hf-home")  # the raw side's caches, not the user's
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        transcript, repo = session(env, hub, size)
        noted: list[float] = []
        raw: list[float] = []
        with daemon_running(env) as daemon:
            assert daemon.proc is not None
            git_commit(repo, "first")
            since = time.perf_counter()
            first = wait_note(repo, repo.git("rev-parse", "HEAD"), since, timeout=1800)
            first_peak = memory_kib(daemon.proc.pid).get("VmHWM", 0) * 1024  # the first upload's share
            # The raw side's first upload, untimed, from a bare process: its peak RSS is the memory
            # baseline (a first upload of new content, as the daemon's first upload was).
            raw_peak = raw_upload_peak(hub, transcript, "raw/session.jsonl")
            for i in range(rounds):
                append_fresh(transcript, GROWTH, seed=1000 + i)
                order = ["daemon", "raw"]
                random.shuffle(order)
                for side in order:
                    if side == "raw":
                        raw.append(raw_upload(hub, transcript, "raw/session.jsonl"))
                        continue
                    git_commit(repo, f"grown {i}")
                    since = time.perf_counter()
                    waited = wait_note(repo, repo.git("rev-parse", "HEAD"), since, timeout=600)
                    if waited is None:
                        raise SystemExit(f"no note within 600 s for the {size / MB:.0f} MB session")
                    noted.append(waited)
            peak = memory_kib(daemon.proc.pid).get("VmHWM", 0) * 1024
    return {
        "first": first if first is not None else float("nan"),
        "noted": statistics.median(noted),
        "raw": statistics.median(raw),
        "peak": float(peak),
        "first_peak": float(first_peak),
        "raw_peak": float(raw_peak),
    }


def peak_only(size: int) -> tuple[float, float]:
    """Daemon VmHWM after linking a session of `size` bytes once (local store); and the seconds."""
    with temp_env() as env:
        _, repo = session(env, None, size)
        with daemon_running(env) as daemon:
            assert daemon.proc is not None
            git_commit(repo, "first")
            since = time.perf_counter()
            waited = wait_note(repo, repo.git("rev-parse", "HEAD"), since, timeout=3600)
            if waited is None:
                raise SystemExit(f"no note within an hour for the {size / MB:.0f} MB session")
            return float(memory_kib(daemon.proc.pid).get("VmHWM", 0) * 1024), waited


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 MB and 50 MB sessions, 100 MB for memory")
    parser.add_argument("--rounds", type=int, help="grown commits per size (default 5, --quick 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--xet-env", action="append", default=[], metavar="KEY=VALUE", help="an hf_xet setting for both sides"
    )
    parser.add_argument("--link", type=float, help="MB/s at which the stand-in's CAS reads uploads (--cas http)")
    parser.add_argument("--sizes", help="session sizes in MB, comma-separated (instead of the defaults)")
    parser.add_argument(
        "--cas", choices=("http", "local"), default="http", help="the stand-in's xet CAS (tests/hubstub.py)"
    )
    parser.add_argument(
        "--only", choices=("ratio", "memory"), help="run only the commit -> note ratios or only the local-store memory"
    )
    args = parser.parse_args()
    random.seed(args.seed)
    os.environ[CAS_MODE_ENV] = args.cas  # HubStub's default, here and in running_hub
    XET_ENV.update(setting.split("=", 1) for setting in args.xet_env)
    LINK[0] = args.link
    sizes: tuple[int, ...] = (20 * MB, 50 * MB) if args.quick else (50 * MB, 500 * MB)
    if args.sizes:
        sizes = tuple(int(float(size) * MB) for size in args.sizes.split(","))
    memory_size = 100 * MB if args.quick else 1000 * MB
    rounds = args.rounds or (2 if args.quick else 5)
    print(f"sessions {', '.join(f'{s / MB:.0f} MB' for s in sizes)}, grown by {GROWTH // 1000} KB per commit,")
    print(f"{rounds} rounds each (medians); Hub stand-in and CAS on this machine (no network)")
    client = "RemoteClient over HTTP" if args.cas == "http" else "local:// simulation client"
    link = f", uploads read at {args.link:g} MB/s" if args.link else ""
    print(f"xet CAS: {args.cas} (hf_xet's {client}{link})" + "".join(f"; {k}={v}" for k, v in XET_ENV.items()))
    print()
    print(
        f"{'session':>9s} {'first note':>11s} {'commit->note':>13s} {'raw upload':>11s} {'ratio':>6s}"
        f" {'daemon peak':>11s} {'raw hf peak':>11s}"
    )
    results: dict[int, dict[str, float]] = {}
    for size in sizes if args.only != "memory" else ():
        r = results[size] = bench_size(size, rounds)
        print(
            f"{size / MB:7.0f}MB {ms(r['first']):>11s} {ms(r['noted']):>13s} {ms(r['raw']):>11s}"
            f" {r['noted'] / r['raw']:5.2f}x {r['peak'] / MiB:8.0f}MiB {r['raw_peak'] / MiB:8.0f}MiB"
        )
    memory_sizes = (*sizes, memory_size) if args.only != "ratio" else ()
    local: dict[int, tuple[float, float]] = {size: peak_only(size) for size in memory_sizes}
    print()
    print("local store (no hf_xet in the daemon): the daemon's own memory")
    print(f"{'session':>9s} {'first note':>11s} {'daemon peak':>11s}")
    for size, (peak, took) in local.items():
        print(f"{size / MB:7.0f}MB {ms(took):>11s} {peak / MiB:8.0f}MiB")
    print()
    for size, r in results.items():
        ratio = r["noted"] / r["raw"]
        print(
            f"commit->note, {size / MB:.0f} MB session grown by 100 KB: {ratio:.2f}x a raw upload"
            f" (target <= {RATIO_TARGET}x: {verdict(ratio <= RATIO_TARGET)})"
        )
    for size, (peak, _) in local.items():
        print(
            f"daemon peak RSS, {size / MB:.0f} MB session, local store: {peak / MiB:.0f} MiB"
            f" (target <= {RSS_TARGET // MiB} MiB: {verdict(peak <= RSS_TARGET)})"
        )
    for size, r in results.items():
        print(
            f"daemon peak RSS, {size / MB:.0f} MB session, Hub stand-in: {r['peak'] / MiB:.0f} MiB"
            f" ({r['first_peak'] / MiB:.0f} MiB after the first note), a bare"
            f" huggingface_hub upload of the same file (same hf_xet bounds) {r['raw_peak'] / MiB:.0f} MiB"
            f" (target <= {RSS_TARGET // MiB} MiB: {verdict(r['peak'] <= RSS_TARGET)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
