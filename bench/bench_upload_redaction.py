"""What redaction adds to an upload: the daemon's data path with and without it, in one run.

    .venv/bin/python bench/bench_upload_redaction.py               # 20 MB, 5 runs, ~15 s
    .venv/bin/python bench/bench_upload_redaction.py --size-mb 50 --runs 7

Why in-process and not through tracekeeperd: the daemon always redacts (fail closed) and has no
switch to turn it off, and adding one only for a benchmark would be a switch that can leak. So
this times the same steps the worker runs for one job, with the same code:

* without: sha256 the snapshot (the note's digest, streamed), `store.preflight()`,
  `store.put([Upload(path, snapshot_file)])`;
* with: the same, but the snapshot first goes through `tracekeeperd.outgoing.RedactedCopies`
  (a redacted copy on disk, made piece by piece, whose pass also gives the note's length and
  sha256) and the copy's file is uploaded.

Stores: `LocalStore` (temp file, fsync, rename) and `HfStore` against the Hub stand-in
(tests/hubstub.py: the real huggingface_hub + hf_xet, chunks sent to the stand-in's CAS over HTTP on
127.0.0.1). Every upload gets a transcript of its own (tests/secretgen.py, a different seed each):
hf_xet deduplicates chunks, and re-sending bytes it has already stored would time nothing.

The four cases are interleaved in a shuffled order each round, after one untimed warm-up round,
and the medians are compared, so drift on a shared machine hits both sides alike. A full first
upload of the session is the worst case: a running daemon redacts a growing session
incrementally, only the lines appended since its last upload. MB here is 10**6 bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.hubstub import running_hub  # noqa: E402
from tests.secretgen import write_transcript  # noqa: E402
from tracekeeperd import outgoing  # noqa: E402
from tracekeeperd.redact import Redactor  # noqa: E402
from tracekeeperd.stores import HfStore, LocalStore, Store, Upload  # noqa: E402

MB = 1_000_000
BUCKET = "alice/agent-traces"
TOKEN = "hf_alice_write"  # the stand-in's built-in test user; not a credential


@dataclass
class Samples:
    """Seconds per timed upload, and for the redacted path the redaction step alone."""

    total: list[float] = field(default_factory=list)
    redact: list[float] = field(default_factory=list)


def upload(store: Store, snapshot: Path, remote: str, redactor: Redactor | None, samples: Samples | None) -> int:
    """One job's data path, as tracekeeperd/worker.py runs it; returns the bytes sent."""
    start = time.perf_counter()
    if redactor is None:
        data: Path = snapshot
        hasher = hashlib.sha256()
        with snapshot.open("rb") as fh:
            while chunk := fh.read(outgoing.CHUNK):
                hasher.update(chunk)
        size = snapshot.stat().st_size
        redacted_at = start
    else:
        # A first upload: the copy is made from the first byte (a fresh directory each time).
        copies = outgoing.RedactedCopies(snapshot.with_name(f"redacted-{time.monotonic_ns()}"))
        raw_bytes = snapshot.stat().st_size
        with snapshot.open("rb") as fh:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(outgoing.CHUNK), b""))
        view = copies.view(
            snapshot, raw_bytes=raw_bytes, raw_lines=lines, raw_sha256=None, lines=[lines], redactor=redactor
        )
        redacted_at = time.perf_counter()
        data, size = view.file, view.size  # the note's length and sha256 came out of the pass
    store.preflight()
    failed = store.put([Upload(remote, data)])
    elapsed = time.perf_counter() - start
    if failed:
        raise SystemExit(f"upload failed: {failed}")
    if samples is not None:
        samples.total.append(elapsed)
        if redactor is not None:
            samples.redact.append(redacted_at - start)
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (one warm-up round is added)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    size = int(args.size_mb * MB)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="tk-bench-upload-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["HF_HOME"] = str(tmp / "hf-home")  # keep hf_xet's caches out of the user's home
        redactor = Redactor()
        seeds = iter(range(args.seed * 1000, args.seed * 1000 + 1000))

        def fresh() -> Path:
            """A transcript no store has seen: new seed, so new chunks for hf_xet."""
            path = tmp / "snapshot.jsonl"
            write_transcript(path, size, seed=next(seeds))
            return path

        sample = fresh()
        lines = sum(1 for _ in sample.open("rb"))
        print(f"input      {sample.stat().st_size / MB:.1f} MB per upload, {lines} lines, a secret line in 40")
        print(f"engine     {redactor.engine}, ruleset {redactor.ruleset_id}; {args.runs} rounds + 1 warm-up")

        with running_hub(tmp / "cas") as hub:
            hub.create_bucket(BUCKET, private=True)
            stores: dict[str, Store] = {
                "local store": LocalStore(tmp / "local-store"),
                "Hub stand-in": HfStore(BUCKET, hub.endpoint, TOKEN),
            }
            results = {(name, mode): Samples() for name in stores for mode in ("plain", "redacted")}
            sent: dict[str, int] = {}
            cases: list[tuple[str, str]] = list(results)
            for round_no in range(args.runs + 1):
                rng.shuffle(cases)
                for name, mode in cases:
                    samples = results[name, mode] if round_no > 0 else None  # round 0 warms up
                    remote = f"bench/r{round_no}-{mode}.jsonl"
                    snapshot = fresh()  # written before the clock starts
                    chosen = redactor if mode == "redacted" else None
                    sent[f"{name}/{remote}"] = upload(stores[name], snapshot, remote, chosen, samples)
            stored = hub.files(BUCKET)
            for key, length in sent.items():
                if key.startswith("Hub stand-in/"):
                    remote = key.split("/", 1)[1]
                    entry = stored.get(remote)
                    if entry is None or entry["size"] != length:
                        raise SystemExit(f"the stand-in does not hold {remote} with {length} bytes")

    print()
    print(f"{'':13s} {'without':>10s} {'with':>10s} {'ratio':>7s} {'added':>9s}   redaction step alone")
    for name in stores:
        plain, redacted = results[name, "plain"], results[name, "redacted"]
        base, with_r = statistics.median(plain.total), statistics.median(redacted.total)
        step = statistics.median(redacted.redact)
        added = (with_r - base) * 1000
        print(
            f"{name:13s} {base * 1000:8.0f}ms {with_r * 1000:8.0f}ms {with_r / base:6.2f}x {added:7.0f}ms"
            f"   {step * 1000:.0f} ms ({size / MB / step:.0f} MB/s)"
        )
    print(
        "\nmedians of per-upload wall time: read + (redact) + sha256 + preflight + put;"
        " every upload a fresh transcript, stand-in and CAS on this machine (no network)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
