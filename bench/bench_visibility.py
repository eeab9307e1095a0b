"""What asking "is the bucket still private?" before every upload costs, against the Hub stand-in.

    .venv/bin/python bench/bench_visibility.py                 # 40 rounds of 2 sizes, ~30 s
    .venv/bin/python bench/bench_visibility.py --rounds 80 --sizes-kb 4 64 1024

Why it exists: tracekeeperd used to trust a "private" answer for 60 s, so a bucket made public
received the next commit's upload. `HfStore.put` now calls `bucket_info` immediately before every
transfer. This times, in one process and with the same client (tests/hubstub.py, the real
huggingface_hub + hf_xet, the stand-in's CAS over HTTP on 127.0.0.1):

* without: `HfApi.batch_bucket_files` alone, the transfer with no visibility check;
* with: `HfStore.put`, which is the visibility check followed by that same transfer;
* check: `HfApi.bucket_info` alone, the check's own round trip.

Every upload is a transcript no store has seen (a new seed), so hf_xet cannot skip it as a
duplicate. Cases are interleaved in a shuffled order each round, after one untimed warm-up round,
and medians are compared, so drift on the shared machine hits both sides alike.

Target, and why: the check is one small GET, while an upload is at least three requests (xet
token, CAS transfer, `/batch` commit). So the check must add at most one such request's worth:
**no more than 10 ms and no more than 25 % of an upload without it**, per size. Against the real
Hub, add one network round trip (tens of milliseconds) to both the check and each of the upload's
own requests; the ratio stays about the same. Exit status is 0 either way: this reports, it does
not judge a shared machine's noise.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.hubstub import running_hub  # noqa: E402
from tracekeeperd.stores import HfStore, Upload  # noqa: E402

BUCKET = "alice/agent-traces"
TOKEN = "hf_alice_write"  # the stand-in's built-in test user; not a credential
TARGET_MS = 10.0
TARGET_RATIO = 0.25


def transcript(size: int, rng: random.Random) -> bytes:
    """JSONL that looks like a session, unique per call (hf_xet deduplicates repeated chunks)."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += b'{"type":"event_msg","n":%d,"text":"%032x"}\n' % (n, rng.getrandbits(128))
        n += 1
    return bytes(out[:size])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds (one warm-up round is added)")
    parser.add_argument("--sizes-kb", type=int, nargs="+", default=[8, 512])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="tk-bench-visibility-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["HF_HOME"] = str(tmp / "hf-home")  # keep hf_xet's caches out of the user's home
        with running_hub(tmp / "cas") as hub:
            hub.create_bucket(BUCKET, private=True)
            store = HfStore(BUCKET, hub.endpoint, TOKEN)
            store.preflight()  # configures the client (timeouts, no progress bars) as the daemon does
            api = store._hf()
            samples: dict[tuple[int, str], list[float]] = {
                (kb, mode): [] for kb in args.sizes_kb for mode in ("without", "with", "check")
            }
            cases = list(samples)
            for round_no in range(args.rounds + 1):
                rng.shuffle(cases)
                for kb, mode in cases:
                    path = f"bench/r{round_no}-{kb}k-{mode}.jsonl"
                    data = transcript(kb * 1024, rng)  # made before the clock starts
                    start = time.perf_counter()
                    if mode == "without":
                        api.batch_bucket_files(BUCKET, add=[(data, path)])
                    elif mode == "with":
                        if store.put([Upload(path, data)]):
                            raise SystemExit(f"upload of {path} failed")
                    else:
                        api.bucket_info(BUCKET)
                    elapsed = time.perf_counter() - start
                    if round_no > 0:  # round 0 warms up
                        samples[kb, mode].append(elapsed)
            held = hub.files(BUCKET)
            uploads = sum(1 for kb, mode in samples if mode != "check") * (args.rounds + 1)
            if len(held) != uploads:
                raise SystemExit(f"the stand-in holds {len(held)} files, expected {uploads}")

    print(f"{args.rounds} rounds + 1 warm-up; medians of per-upload wall time, stand-in on this machine")
    print(f"target: the check adds <= {TARGET_MS:.0f} ms and <= {TARGET_RATIO:.0%} of an upload without it\n")
    print(f"{'size':>8s} {'without':>10s} {'with':>10s} {'added':>9s} {'share':>7s} {'check alone':>12s}   verdict")
    for kb in args.sizes_kb:
        without = statistics.median(samples[kb, "without"])
        with_check = statistics.median(samples[kb, "with"])
        check = statistics.median(samples[kb, "check"])
        added = with_check - without
        share = added / without
        met = added * 1000 <= TARGET_MS and share <= TARGET_RATIO
        print(
            f"{kb:>6d}KB {without * 1000:8.1f}ms {with_check * 1000:8.1f}ms {added * 1000:7.1f}ms {share:6.1%}"
            f" {check * 1000:10.1f}ms   target {'met' if met else 'missed'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
