#!/usr/bin/env python3
# Usage: unlink_while_syncing.py DIR [ROUNDS]
# fdatasync latency of small appends (a journal, every ~2 ms) while a 64 MiB file on the same
# file system is deleted, as fjall deletes a table after a compaction:
#   unlink   the file is unlinked and so freed at once (on a file system mounted with
#            `discard`, one discard request of the whole file)
#   steps    a descriptor is kept, the file unlinked, then truncated 1 MiB at a time, 3 ms
#            apart, and closed when empty (what chatd's table pacer does)
import os, sys, threading, time

MIB = 1 << 20
d = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
os.makedirs(d, exist_ok=True)
buf = os.urandom(MIB)

def make(path):
    f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for _ in range(64):
        os.write(f, buf)
    os.fsync(f)
    os.close(f)

journal = os.open(os.path.join(d, "journal"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
lat, stop = [], threading.Event()

def appends():
    while not stop.is_set():
        os.write(journal, b"x" * 4096)
        t = time.perf_counter()
        os.fdatasync(journal)
        lat.append((time.perf_counter() - t) * 1000)
        time.sleep(0.002)

for mode in ("unlink", "steps"):
    for _ in range(rounds):
        path = os.path.join(d, "table")
        make(path)
        time.sleep(0.5)
        lat.clear(); stop.clear()
        th = threading.Thread(target=appends); th.start()
        time.sleep(0.1)
        t = time.perf_counter()
        if mode == "unlink":
            os.unlink(path)
        else:
            fd = os.open(path, os.O_RDWR)
            os.unlink(path)
            size = 64 * MIB
            while size > 0:
                size -= MIB
                os.ftruncate(fd, size)
                time.sleep(0.003)
            os.close(fd)
        took = (time.perf_counter() - t) * 1000
        time.sleep(0.1); stop.set(); th.join()
        lat.sort()
        print(f"{mode}: freeing took {took:.1f} ms; journal fdatasync p50 {lat[len(lat)//2]:.2f} max {lat[-1]:.2f} ms (n={len(lat)})")
