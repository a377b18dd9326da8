#!/usr/bin/env python3
# Usage: fsync_while_writing.py DIR SECONDS
# fsync latency of small appends (a journal) alone, and while another file of 32 MiB is
# written and fsynced (a table flush), on the same filesystem.
import os, time, threading, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
j = os.open(os.path.join(d, "journal"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
busy = threading.Event(); stop = threading.Event()
def table():
    while not stop.is_set():
        time.sleep(1.0)
        busy.set()
        f = os.open(os.path.join(d, "table"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        buf = os.urandom(1 << 20)
        for _ in range(32): os.write(f, buf)
        os.fsync(f); os.close(f)
        busy.clear()
t = threading.Thread(target=table); t.start()
quiet, during = [], []
end = time.time() + float(sys.argv[2])
blk = b"x" * 4096
while time.time() < end:
    os.write(j, blk)
    b = busy.is_set(); t0 = time.perf_counter(); os.fsync(j); dt = (time.perf_counter() - t0) * 1000
    (during if b or busy.is_set() else quiet).append(dt)
    time.sleep(0.002)
stop.set(); t.join()
def pct(xs, p): xs = sorted(xs); return xs[min(len(xs)-1, int(len(xs)*p))] if xs else 0
for name, xs in (("no table write", quiet), ("table being written", during)):
    print(f"{name}: n={len(xs)} p50={pct(xs,.5):.2f} p99={pct(xs,.99):.2f} max={max(xs) if xs else 0:.2f} ms")
