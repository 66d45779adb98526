#!/usr/bin/env python3
"""A long development session, compressed: `hotslot watch` over a directory
whose plugin (calc) is rebuilt N times, each rebuild new bytes (a custom
section changed, as a rebuild that changed no code leaves them), each
answered before the next. Prints, every 500 reloads, the time taken and
the host's resident memory, threads and open file descriptors.

    scripts/soak.py [N] [HOTSLOT_BINARY]

Needs `make guests` and a release build (`cargo build --release`). Runs in
a fresh HOME under /tmp/hotslot-soak, so the code cache starts empty and
fills as a month of rebuilds would fill it; SOAK_PREFILL=K starts it with
K small files of other code instead (a cache already that long).
"""
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
BIN = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/release/hotslot")
CALC = os.path.join(ROOT, "guest-plugins/target/wasm32-wasip2/release/calc.wasm")
WORK = "/tmp/hotslot-soak"
PLUGINS = os.path.join(WORK, "plugins")
HOME = os.path.join(WORK, "home")
TIMEOUT = 30


def leb128(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rebuild(component, i):
    """`component` with a custom section saying `i`: new bytes, same code."""
    name, data = b"soak", str(i).encode() * 8
    payload = bytes([len(name)]) + name + data
    return component + b"\x00" + leb128(len(payload)) + payload


def main():
    calc = open(CALC, "rb").read()
    for d in (PLUGINS, HOME):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)

    def write(i):
        # Written whole, then renamed in, as build tools do.
        tmp = os.path.join(PLUGINS, ".calc.tmp")
        with open(tmp, "wb") as f:
            f.write(rebuild(calc, i))
        os.rename(tmp, os.path.join(PLUGINS, "calc.wasm"))

    prefill = int(os.environ.get("SOAK_PREFILL", "0"))
    if prefill:
        # Another month's code, small files: the directory's length alone.
        kept = os.path.join(HOME, ".cache/hotslot/code")
        os.makedirs(kept, mode=0o700)
        for k in range(prefill):
            with open(os.path.join(kept, f"prefill-{k}.cwasm"), "wb") as f:
                f.write(b"\0" * 1024)
    write(0)
    env = dict(os.environ, HOME=HOME, XDG_CACHE_HOME=os.path.join(HOME, ".cache"),
               HOTSLOT_LOG="warn")
    host = subprocess.Popen([BIN, "watch", PLUGINS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, text=True, bufsize=1)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in host.stdout], daemon=True).start()

    def ask(request):
        host.stdin.write(request + "\n")
        host.stdin.flush()
        answer = [lines.get(timeout=TIMEOUT)]
        while request == "list" and answer[-1].strip() != "end":
            answer.append(lines.get(timeout=TIMEOUT))
        return answer

    def generation():
        for line in ask("list"):
            words = line.split()
            if len(words) >= 3 and words[0].startswith("demo:calc/math"):
                return int(words[2])
        return None

    def status():
        proc = f"/proc/{host.pid}"
        fields = dict(line.split(":", 1) for line in open(f"{proc}/status"))
        return (f"rss {int(fields['VmRSS'].split()[0]) / 1024:.1f} MiB, "
                f"{fields['Threads'].strip()} threads, "
                f"{len(os.listdir(f'{proc}/fd'))} fds")

    def wait_for(changed):
        deadline = time.time() + TIMEOUT
        while not changed():
            if time.time() > deadline:
                sys.exit("no reload within %d s" % TIMEOUT)
            time.sleep(0.01)

    wait_for(lambda: generation() is not None)
    print(f"start: {status()}", flush=True)
    started = last = time.time()
    for i in range(1, N + 1):
        before = generation()
        write(i)
        wait_for(lambda: generation() != before)
        answer = ask(f"demo:calc/math#add({i}, 1)")[0].strip()
        if answer != str(i + 1):
            sys.exit(f"reload {i} answered {answer!r}")
        if i % 500 == 0:
            now = time.time()
            print(f"{i} reloads, {now - started:.1f} s "
                  f"(the last 500: {(now - last) / 500 * 1e3:.1f} ms each): {status()}",
                  flush=True)
            last = now
    host.stdin.write("quit\n")
    host.stdin.flush()
    host.wait(timeout=TIMEOUT)
    kept = os.path.join(HOME, ".cache/hotslot/code")
    files = len(os.listdir(kept)) if os.path.isdir(kept) else 0
    print(f"exit {host.returncode}; {files} files of compiled code kept")


if __name__ == "__main__":
    main()
