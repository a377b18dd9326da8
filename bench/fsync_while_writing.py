#!/usr/bin/env python3
# Usage: fsync_while_writing.py DIR SECONDS [MODE]
# fdatasync latency of small appends (a journal) alone, and while another file of 32 MiB is
# written and fsynced (a table flush), on the same filesystem. MODE says what the writers do,
# to see which remedy would take the table write out of the journal's way:
#   plain      as fjall 3.1 does: the journal grows into a sparse file, the table is written
#              whole and fsynced at the end (the default)
#   paced      the table writer starts writeback of every MiB it writes and waits for the one
#              before (sync_file_range), so its data reaches the disk gradually
#   prezeroed  the journal overwrites blocks written beforehand, so an fdatasync has no
#              metadata to commit and does not join ext4's journal commit
#   both       paced and prezeroed
#   idle       plain, with the table writer in the idle I/O priority class
#   outside    plain, and another thread (not the writer) starts writeback of each MiB of the
#              table as soon as it is written, without ever making the writer wait
#   outside-prezeroed  outside and prezeroed
# WRITER_MS_PER_MIB (environment, default 0) spaces the table writer's MiBs, as compression does.
import ctypes, os, sys, threading, time

libc = ctypes.CDLL("libc.so.6", use_errno=True)
SFR_WAIT_BEFORE, SFR_WRITE, SFR_WAIT_AFTER = 1, 2, 4
MIB = 1 << 20

def sync_range(fd, off, n, flags):
    libc.sync_file_range(ctypes.c_int(fd), ctypes.c_longlong(off), ctypes.c_longlong(n), ctypes.c_uint(flags))

d, secs = sys.argv[1], float(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "plain"
os.makedirs(d, exist_ok=True)
j = os.open(os.path.join(d, "journal"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
if mode in ("prezeroed", "both", "outside-prezeroed"):
    zeros = b"\0" * MIB
    for _ in range(256):
        os.write(j, zeros)
    os.fsync(j)
    os.lseek(j, 0, os.SEEK_SET)
busy = threading.Event(); stop = threading.Event()

def table():
    if mode == "idle":
        # ioprio_set(IOPRIO_WHO_PROCESS, this thread, IOPRIO_CLASS_IDLE)
        libc.syscall(251, 1, threading.get_native_id(), 3 << 13)
    buf = os.urandom(MIB)
    pace = float(os.environ.get("WRITER_MS_PER_MIB", "0")) / 1000
    while not stop.is_set():
        time.sleep(1.0)
        busy.set()
        f = os.open(os.path.join(d, "table"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        for i in range(32):
            os.write(f, buf)
            if pace:
                time.sleep(pace)
            if mode in ("paced", "both"):
                sync_range(f, i * MIB, MIB, SFR_WRITE)
                if i > 0:
                    sync_range(f, (i - 1) * MIB, MIB, SFR_WAIT_BEFORE | SFR_WRITE | SFR_WAIT_AFTER)
        os.fsync(f); os.close(f)
        busy.clear()

def outside():
    # Knows only the file's name, as a watcher of fjall's table directory would.
    path = os.path.join(d, "table")
    fd, ino, started = None, None, 0
    while not stop.is_set():
        time.sleep(0.001)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_ino != ino or fd is None or st.st_size < started:
            if fd is not None:
                os.close(fd)
            fd, ino, started = os.open(path, os.O_RDONLY), st.st_ino, 0
        whole = st.st_size // MIB * MIB
        if whole > started:
            sync_range(fd, started, whole - started, SFR_WRITE)
            started = whole

t = threading.Thread(target=table); t.start()
if mode.startswith("outside"):
    o = threading.Thread(target=outside); o.start()
quiet, during = [], []
end = time.time() + secs
blk = b"x" * 4096
while time.time() < end:
    os.write(j, blk)
    b = busy.is_set(); t0 = time.perf_counter(); os.fdatasync(j); dt = (time.perf_counter() - t0) * 1000
    (during if b or busy.is_set() else quiet).append(dt)
    time.sleep(0.002)
stop.set(); t.join()
if mode.startswith("outside"):
    o.join()

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0

for name, xs in (("no table write", quiet), ("table being written", during)):
    print(f"{mode}, {name}: n={len(xs)} p50={pct(xs,.5):.2f} p99={pct(xs,.99):.2f} max={max(xs) if xs else 0:.2f} ms")
