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


print("| call | direct wasmtime | through a handle | ratio |")
print("|---|---|---|---|")
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    for direct in sorted(group.glob("*_direct")):
        kind = direct.name[: -len("_direct")]
        handle = group / f"{kind}_handle"
        if not handle.exists():
            continue
        d, h = median_ns(direct), median_ns(handle)
        print(f"| {group.name} ({kind}) | {d:.1f} ns | {h:.1f} ns | {h / d:.2f}x |")
