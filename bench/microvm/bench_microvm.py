"""bench/microvm: what a microVM call costs through the gateway, against bare QEMU.

In one run, for one guest (a /bin/true tool; image, memory and vCPUs as the tier builds
them), all under the accelerator this host has (TCG here):
  1. cold: POST /v1/tools/<t>/calls with pool.size 0, so every call boots its own jailed
     guest from the kernel (boot + call + teardown);
  2. warm: the same tool with pool.size 1, each call issued once the pool holds a guest
     (a hit: the call runs on a guest restored ahead of demand);
  3. snapshot-restore: bare QEMU restoring the tier's snapshot (-incoming) and running
     one call over the agent's protocol, per call (what a pool refill plus a call costs);
  4. the reference: bare `qemu-system-x86_64 -M microvm ...` with the same kernel, image
     and devices, booting and running the same call once per call, unjailed;
  5. under load: back to back from one client with pool.size 1, and from 2 clients at once
     with pool.size 2, no waiting at all: the pool drains when calls outpace restores, and
     misses boot cold.
The machine is shared and its load changes by the minute, so 1-4 are interleaved call by
call (cold, bare boot, hit, bare restore, ...): each ratio compares calls made under the
same load.
Targets under TCG: warm p50 <= 0.1 x cold p50; cold p50 <= 1.2 x bare QEMU p50.

Environment: GATEHOUSE (the binary), GATE_SOURCE_DIR, GATE_BUILD_DIR; optional BENCH_N
(calls per figure, default 20). Needs root, QEMU and the guest kernel.
"""
import json
import os
import secrets
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("GATE_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
import harness  # noqa: E402

N = int(os.environ.get("BENCH_N", "20"))
QEMU = "/usr/bin/qemu-system-x86_64"
TOOL = "/bin/true"

# proto.h
READY, PING, PONG, CALL, OUT, ERR, EXIT, FAIL = range(1, 9)


def ms(t0):
    return (time.monotonic() - t0) * 1000.0


def p50(xs):
    return statistics.median(xs)


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def metric(gw, name, tool=None):
    key = '%s{tool="%s"} ' % (name, tool) if tool else name + " "
    for line in gw.request("GET", "/metrics").body.decode().split("\n"):
        if line.startswith(key):
            return int(float(line[len(key):]))
    return None


def wait_pool(gw, tool, size=1):
    deadline = time.monotonic() + 120
    while metric(gw, "gatehouse_microvm_pool_size", tool) != size:
        if time.monotonic() > deadline:
            raise RuntimeError("the pool of %s did not fill" % tool)
        time.sleep(0.01)


def policy(name, pool):
    return ("name: %s\ndescription: bench\ncommand: [\"%s\"]\nisolation: microvm\n"
            "limits: {memory_mb: 128, wall_timeout: 60s}\npool:\n  size: %d\n" % (name, TOOL, pool))


def call_ok(gw, tool):
    t0 = time.monotonic()
    r = gw.call(tool, {})
    took = ms(t0)
    if r.status != 200 or r.json()["status"] != "succeeded":
        raise RuntimeError("%s: %s" % (tool, r.body[:300]))
    return took


class Bare:
    """QEMU run directly, unjailed, with the tier's command line for this guest."""

    def __init__(self, argv, snapshot):
        self.argv = argv
        self.snapshot = snapshot

    def frame(self):
        argv = [TOOL.encode()]
        env = [b"GATEHOUSE_CALL_ID=bench", b"GATEHOUSE_TOOL=bench"]
        hdr = struct.pack("<4Q10I64s", time.time_ns(), 1 << 20, 64 << 20, 10, 65534, 65534, 64,
                          64, 0, 0, len(argv), len(env), 0, 0, secrets.token_bytes(64))
        body = hdr + b"".join(a + b"\0" for a in argv + env)
        return struct.pack("<II", CALL, len(body)) + body

    @staticmethod
    def read_frame(fd, deadline):
        buf = b""
        while len(buf) < 8:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                raise RuntimeError("no frame from the guest")
            chunk = os.read(fd, 8 - len(buf))
            if not chunk:
                raise RuntimeError("the guest went away")
            buf += chunk
        t, n = struct.unpack("<II", buf)
        data = b""
        while len(data) < n:
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise RuntimeError("the guest went away")
            data += chunk
        return t, data

    def one(self, restore):
        """Boot (or restore), run one call to its EXIT frame, end QEMU. Returns ms."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        con_a, con_b = socket.socketpair()
        argv = list(self.argv)
        pass_fds = [con_b.fileno()]
        snap = None
        if restore:
            snap = os.open(self.snapshot, os.O_RDONLY)
            argv += ["-incoming", "fd:%d" % snap]
            pass_fds.append(snap)
        argv = [a.replace("fd=3", "fd=%d" % con_b.fileno()) for a in argv]
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=in_r, stdout=out_w, stderr=con_b.fileno(),
                             pass_fds=pass_fds)
        os.close(in_r)
        os.close(out_w)
        con_b.close()
        if snap is not None:
            os.close(snap)
        deadline = time.monotonic() + 60
        try:
            if restore:
                os.write(in_w, struct.pack("<II", PING, 0))
                assert self.read_frame(out_r, deadline)[0] == PONG
            else:
                assert self.read_frame(out_r, deadline)[0] == READY
            os.write(in_w, self.frame())
            while True:
                t, data = self.read_frame(out_r, deadline)
                if t == EXIT:
                    break
                if t == FAIL:
                    raise RuntimeError("guest: %s" % data)
            took = ms(t0)
        finally:
            p.kill()
            p.wait()
            os.close(in_w)
            os.close(out_r)
            con_a.close()
        return took


def tier_argv(gw_pid):
    """The command line of a pooled QEMU, minus its restore and its jail-only parts."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != gw_pid:
                    continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
        except (OSError, ValueError):
            continue
        if argv and argv[0] == QEMU and "-incoming" in argv:
            i = argv.index("-incoming")
            return argv[:i] + argv[i + 2:]
    raise RuntimeError("no pooled QEMU found")


def concurrent(gw, tool, clients, n):
    """n calls from `clients` threads at once; returns (latencies, seconds, pool hits)."""
    lat, lock = [], threading.Lock()
    h0 = metric(gw, "gatehouse_microvm_pool_hits_total", tool)

    def client(k):
        for _ in range(k):
            took = call_ok(gw, tool)
            with lock:
                lat.append(took)
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(n // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, ms(t0) / 1000.0, metric(gw, "gatehouse_microvm_pool_hits_total", tool) - h0


def main():
    if os.geteuid() != 0:
        harness.skip("needs root")
    pol = tempfile.mkdtemp(prefix="gh-bench-microvm-")
    harness.write_policy(pol, "cold", policy("cold", 0))
    harness.write_policy(pol, "warm", policy("warm", 1))
    harness.write_policy(pol, "warm2", policy("warm2", 2))
    gw = harness.Gateway(pol)
    gw.start(timeout=300)
    try:
        accel = "kvm" if metric(gw, "gatehouse_microvm_kvm") else "tcg"
        wait_pool(gw, "warm")
        argv = tier_argv(gw.proc.pid)
        guest_dir = os.path.dirname(argv[argv.index("-initrd") + 1])
        # The jail's root holds the guest directory at its host path: the same files here.
        snapshot = os.path.join(guest_dir, "snapshot")
        bare = Bare(argv, snapshot)
        call_ok(gw, "cold")  # the page cache holds kernel and image from here on
        bare.one(False)
        cold, bare_cold, hits, bare_restore = [], [], [], []
        for _ in range(N):
            wait_pool(gw, "warm")
            wait_pool(gw, "warm2", 2)
            cold.append(call_ok(gw, "cold"))
            bare_cold.append(bare.one(False))
            hits.append(call_ok(gw, "warm"))
            bare_restore.append(bare.one(True))
        wait_pool(gw, "warm")
        h0 = metric(gw, "gatehouse_microvm_pool_hits_total", "warm")
        t0 = time.monotonic()
        b2b = [call_ok(gw, "warm") for _ in range(N)]
        b2b_s = ms(t0) / 1000.0
        b2b_hits = metric(gw, "gatehouse_microvm_pool_hits_total", "warm") - h0
        wait_pool(gw, "warm2", 2)
        conc, conc_s, conc_hits = concurrent(gw, "warm2", 2, N)
    finally:
        gw.stop()
        gw.cleanup()
        shutil.rmtree(pol, ignore_errors=True)

    print("microVM tier, %s, %d calls per figure, tool %s, guest 128 MB / 1 vCPU" % (accel, N, TOOL))
    rows = [
        ("bare QEMU boot + call (reference)", bare_cold),
        ("tier cold call (jail + boot + call)", cold),
        ("bare QEMU snapshot restore + call", bare_restore),
        ("tier warm-pool call (pool hit)", hits),
        ("tier back to back, pool 1", b2b),
        ("tier 2 clients at once, pool 2", conc),
    ]
    ref = p50(bare_cold)
    for name, xs in rows:
        print("  %-40s p50 %8.1f ms  p90 %8.1f ms  %6.3fx bare boot" % (name, p50(xs), pct(xs, 90),
                                                                     p50(xs) / ref))
    print("  back to back: %.2f calls/s, %d of %d were pool hits" % (N / b2b_s, b2b_hits, N))
    print("  2 clients: %.2f calls/s, %d of %d were pool hits" % (len(conc) / conc_s, conc_hits,
                                                                 len(conc)))
    r_cold = p50(cold) / p50(bare_cold)
    r_warm = p50(hits) / p50(cold)
    r_restore = p50(bare_restore) / p50(bare_cold)
    print("ratios:")
    print("  cold call / bare QEMU boot          %.2fx (target <= 1.2x: %s)" %
          (r_cold, "met" if r_cold <= 1.2 else "NOT met"))
    print("  warm-pool call / cold call          %.3fx (target <= 0.1x: %s)" %
          (r_warm, "met" if r_warm <= 0.1 else "NOT met"))
    print("  snapshot restore + call / bare boot %.2fx" % r_restore)
    print("  back-to-back p50 / cold call        %.2fx" % (p50(b2b) / p50(cold)))


if __name__ == "__main__":
    main()
