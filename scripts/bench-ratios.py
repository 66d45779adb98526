#!/usr/bin/env python3
"""Prints each hotslot bench beside its raw-wasmtime baseline from the same run.

Reads criterion's estimates (target/criterion/GROUP/KIND_SIDE/new/estimates.json)
and prints a Markdown table: median of the direct call, median through a
handle, and their ratio.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def median_ns(path):
    with open(path / "new" / "estimates.json") as f:
        return json.load(f)["median"]["point_estimate"]


print("| call | direct wasmtime | through hotslot | ratio |")
print("|---|---|---|---|")
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    for direct in sorted(group.glob("*_direct")):
        kind = direct.name[: -len("_direct")]
        d = median_ns(direct)
        for way in ("handle", "batch"):
            other = group / f"{kind}_{way}"
            if other.exists():
                h = median_ns(other)
                print(f"| {group.name} ({kind}, {way}) | {d:.1f} ns | {h:.1f} ns | {h / d:.2f}x |")
