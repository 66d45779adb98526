#!/usr/bin/env python3
"""Runs a section of the `features` bench in several processes and reports
the median across processes of each process's ratios.

One process's figures move by up to +-5 % from one run to the next (where
the direct side's store and code land in memory decides it), more than the
spread inside a run. Given several bench binaries (say, one built before a
change and one after), it runs them alternately, so both see the same
machine at the same time.

    cargo bench -p hotslot --bench features --no-run
    cp target/release/deps/features-<hash> /tmp/after
    scripts/bench-processes.py 7 calls /tmp/before /tmp/after

Prints, per binary and row: median [lowest .. highest] over the processes.
"""
import collections
import re
import statistics
import subprocess
import sys

ROWS = [
    # "  name   123.4 ns  [..]   ratio 1.234 [..]"
    (re.compile(r"\s+(.*?)\s{2,}[\d.]+ ns\s+\[.*?\]\s+ratio ([\d.]+)"), "{}"),
    # "  name   1 thread 6.1 M/s, 2 threads 11.0 M/s: x1.79 [..]"
    (re.compile(r"\s+(.*?)\s+1 thread [\d.]+ M/s, 2 threads [\d.]+ M/s: x([\d.]+)"), "2 threads / 1: {}"),
    # "  hotslot (2 instances) scaling / wasmtime's: 1.11 [..]"
    (re.compile(r"\s+(hotslot \(2 instances\) scaling / wasmtime.s): ([\d.]+)"), "{}"),
    # "  hotslot, plugin with 1 instance, 4 threads / 1: x0.95 [..]"
    (re.compile(r"\s+(hotslot, plugin with 1 instance, 4 threads / 1): x([\d.]+)"), "{}"),
    # "  wasmtime: store + ... median 9.0 us, p90 .., p99 .."
    (re.compile(r"\s+(.*?)\s+median ([\d.]+) us, p90"), "{} (median us)"),
    # "  hotslot / wasmtime, per-round medians: 1.30x [..]"
    (re.compile(r"\s+(hotslot / wasmtime), per-round medians: ([\d.]+)x"), "{}"),
]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    runs, section, binaries = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    seen = {b: collections.defaultdict(list) for b in binaries}
    for _ in range(runs):
        for binary in binaries:
            out = subprocess.run(
                [binary, "--bench", section], capture_output=True, text=True, check=True
            ).stdout
            for line in out.splitlines():
                for pattern, label in ROWS:
                    found = pattern.match(line)
                    if found:
                        row = label.format(found.group(1).strip())
                        seen[binary][row].append(float(found.group(2)))
                        break
    for binary in binaries:
        print(f"== {binary} ({runs} processes)")
        for row, values in seen[binary].items():
            print(
                f"  {row:<60} {statistics.median(values):.3f} "
                f"[{min(values):.3f} .. {max(values):.3f}]"
            )


if __name__ == "__main__":
    main()
