"""bench/gvisor: what a gVisor call costs through the gateway, against `runsc do`.

In one run:
  1. p50/p99 of POST /v1/tools/<t>/calls for a /bin/true tool in the gvisor tier with a
     warm pool (each call waits until the pool is full again, so every call is a hit),
  2. the same with pool.size 0 (every call boots its own sandbox: a cold start),
  3. the median of `runsc --network=none do /bin/true` (the reference),
  4. design measurements at the runsc level: booting a sandbox (run --detach) against
     restoring one from a checkpoint (for refilling the pool), and serving a call from a
     booted sandbox by `runsc exec` against our launcher (write the call header on stdin).
Target: warm p50 <= 0.3 x the runsc do median.

Environment: GATEHOUSE (the binary), GATE_BUILD_DIR (for the helper), optional BENCH_N.
Needs root and a working runsc.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("GATE_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
import harness  # noqa: E402

RUNSC = shutil.which("runsc", path="/usr/bin:/usr/sbin:/usr/local/bin")
N = int(os.environ.get("BENCH_N", "50"))


def ms(t0):
    return (time.monotonic() - t0) * 1000.0


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def metric(gw, name, tool):
    key = '%s{tool="%s"} ' % (name, tool)
    for line in gw.request("GET", "/metrics").body.decode().split("\n"):
        if line.startswith(key):
            return int(float(line[len(key):]))
    return None


def wait_pool(gw, tool, size):
    deadline = time.monotonic() + 60
    while metric(gw, "gatehouse_gvisor_pool_size", tool) != size:
        if time.monotonic() > deadline:
            raise RuntimeError("pool of %s did not fill" % tool)
        time.sleep(0.02)


def gateway_latencies(n):
    pol = tempfile.mkdtemp(prefix="gh-bench-gvisor-")
    for name, size in (("gtrue_warm", 2), ("gtrue_cold", 0)):
        harness.write_policy(pol, name, "name: %s\ndescription: bench\ncommand: [\"/bin/true\"]\n"
                             "isolation: gvisor\npool:\n  size: %d\n" % (name, size))
    gw = harness.Gateway(pol).start()
    try:
        warm, cold = [], []
        for _ in range(n):
            wait_pool(gw, "gtrue_warm", 2)
            time.sleep(0.05)  # let the refill's runsc processes finish their exit
            t0 = time.monotonic()
            r = gw.call("gtrue_warm", {})
            warm.append(ms(t0))
            assert r.status == 200 and r.json()["status"] == "succeeded", r.body
        hits = metric(gw, "gatehouse_gvisor_pool_hits_total", "gtrue_warm")
        for _ in range(max(10, n // 2)):
            t0 = time.monotonic()
            r = gw.call("gtrue_cold", {})
            cold.append(ms(t0))
            assert r.status == 200 and r.json()["status"] == "succeeded", r.body
        # Back to back, no waiting: the pool drains when calls outpace refills.
        t0 = time.monotonic()
        h0 = metric(gw, "gatehouse_gvisor_pool_hits_total", "gtrue_warm")
        for _ in range(n):
            gw.call("gtrue_warm", {})
        b2b_s = ms(t0) / 1000.0
        b2b_hits = metric(gw, "gatehouse_gvisor_pool_hits_total", "gtrue_warm") - h0
        return warm, cold, hits, (n / b2b_s, b2b_hits)
    finally:
        gw.stop()
        gw.cleanup()
        shutil.rmtree(pol, ignore_errors=True)


def runsc_do(n):
    root = tempfile.mkdtemp(prefix="gh-bench-runsc-")
    try:
        out = []
        for _ in range(n):
            t0 = time.monotonic()
            subprocess.run([RUNSC, "--root", root, "--network=none", "do", "/bin/true"], check=True,
                           env={"PATH": "/usr/bin:/bin"})
            out.append(ms(t0))
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Bundle:
    """A bundle like the tier's: read-only root with merged-/usr links and our launcher."""

    def __init__(self, helper):
        self.dir = tempfile.mkdtemp(prefix="gh-bench-bundle-")
        self.root = os.path.join(self.dir, "state")
        rootfs = os.path.join(self.dir, "rootfs")
        os.makedirs(os.path.join(rootfs, ".gatehouse"))
        for d in ("usr", "tmp", "proc", "dev"):
            os.mkdir(os.path.join(rootfs, d))
        for l in ("bin", "lib", "lib64", "sbin"):
            os.symlink("usr/" + l, os.path.join(rootfs, l))
        shutil.copy(helper, os.path.join(rootfs, ".gatehouse", "launcher"))
        cfg = {
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/usr/bin:/bin"],
                        "args": ["/.gatehouse/launcher", "launch", "--user=65534:65534", "--", "/bin/true"],
                        "capabilities": {k: ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]
                                         for k in ("bounding", "effective", "permitted")},
                        "noNewPrivileges": True},
            "root": {"path": rootfs, "readonly": True},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                       {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
                       {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}],
            "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
        }
        with open(os.path.join(self.dir, "config.json"), "w") as f:
            json.dump(cfg, f)

    def runsc(self, *args, **kw):
        return subprocess.run([RUNSC, "--root", self.root, "--network=none"] + list(args), **kw)

    def boot(self, cid, restore_from=None):
        """run --detach, as the tier does (or restore); returns (ms, stdin write end, stdout read end)."""
        inr, inw = os.pipe()
        outr, outw = os.pipe()
        t0 = time.monotonic()
        if restore_from:
            self.runsc("restore", "--detach", "--image-path", restore_from, "--bundle", self.dir, cid,
                       stdin=inr, stdout=outw, stderr=outw, check=True)
        else:
            self.runsc("run", "--detach", "--bundle", self.dir, cid, stdin=inr, stdout=outw, stderr=outw,
                       check=True)
        took = ms(t0)
        os.close(inr)
        os.close(outw)
        return took, inw, outr

    def delete(self, cid):
        self.runsc("delete", "--force", cid, stderr=subprocess.DEVNULL)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def launcher_call(inw, outr):
    header = b"PATH=/usr/bin:/bin\0"
    t0 = time.monotonic()
    os.write(inw, b"%08d" % len(header) + header + b"{}")
    os.close(inw)
    while os.read(outr, 65536):
        pass
    took = ms(t0)
    os.close(outr)
    return took


def design_numbers(helper, n):
    b = Bundle(helper)
    try:
        boots, restores, launches, execs = [], [], [], []
        for i in range(n):
            took, inw, outr = b.boot("boot%d" % i)
            boots.append(took)
            launches.append(launcher_call(inw, outr))
            b.delete("boot%d" % i)
        # Option (b): a booted sandbox per call, served by `runsc exec` (the launcher waits).
        for i in range(n):
            _, inw, outr = b.boot("exec%d" % i)
            t0 = time.monotonic()
            b.runsc("exec", "--user", "65534:65534", "exec%d" % i, "/bin/true", check=True)
            execs.append(ms(t0))
            os.close(inw)
            os.close(outr)
            b.delete("exec%d" % i)
        image = os.path.join(b.dir, "image")
        os.mkdir(image)
        _, inw, outr = b.boot("ckpt")
        t0 = time.monotonic()
        b.runsc("checkpoint", "--image-path", image, "ckpt", check=True)
        ckpt = ms(t0)
        os.close(inw)
        os.close(outr)
        b.delete("ckpt")
        for i in range(n):
            took, inw, outr = b.boot("rst%d" % i, restore_from=image)
            restores.append(took)
            launcher_call(inw, outr)
            b.delete("rst%d" % i)
        return boots, restores, ckpt, launches, execs
    finally:
        b.cleanup()


def main():
    if os.geteuid() != 0 or not RUNSC:
        print("bench/gvisor: needs root and runsc")
        return 77
    if not harness.GATEHOUSE or not os.path.exists(harness.GATEHOUSE):
        print("bench/gvisor: set GATEHOUSE to the gatehouse binary")
        return 2
    helper = os.path.join(harness.BUILD_DIR, "sandboxes", "gvisor", "gatehouse-gvisor-helper")
    do = runsc_do(max(10, N // 2))
    warm, cold, hits, (b2b_rate, b2b_hits) = gateway_latencies(N)
    boots, restores, ckpt, launches, execs = design_numbers(helper, max(5, N // 5))
    do_med = statistics.median(do)
    print("gvisor tier, /bin/true through POST /v1/tools/<tool>/calls (%d calls each)" % N)
    print("  warm pool (size 2): p50 %7.1f ms  p99 %7.1f ms  (%d/%d pool hits)"
          % (pct(warm, 50), pct(warm, 99), hits, N))
    print("  empty pool (size 0): p50 %7.1f ms  p99 %7.1f ms" % (pct(cold, 50), pct(cold, 99)))
    print("  runsc --network=none do /bin/true: median %7.1f ms" % do_med)
    print("  ratio warm p50 / runsc do median: %.2f (target <= 0.30)" % (pct(warm, 50) / do_med))
    print("  ratio cold p50 / runsc do median: %.2f" % (pct(cold, 50) / do_med))
    print("  back to back, no waiting for refills: %.1f calls/s, %d/%d pool hits" % (b2b_rate, b2b_hits, N))
    print("runsc level (median of %d):" % len(boots))
    print("  refill by boot (run --detach):     %7.1f ms" % statistics.median(boots))
    print("  refill by restore of a checkpoint: %7.1f ms  (checkpoint once: %.1f ms)"
          % (statistics.median(restores), ckpt))
    print("  call by launcher header on stdin:  %7.1f ms" % statistics.median(launches))
    print("  call by runsc exec:                %7.1f ms" % statistics.median(execs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
