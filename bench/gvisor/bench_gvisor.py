"""bench/gvisor: what gVisor calls cost through the gateway under sustained load, against
`runsc do` measured the same way in the same run.

In one run, in rounds that alternate gateway blocks and `runsc do` blocks (the machine is
shared; within a block everything runs back to back):
  1. back to back: /bin/true tools in the gvisor tier with warm pools of size 1 and 4, called
     with no pause (a pool is refilled in the background and may be empty when the next call
     comes), p50/p99, calls/s and the pool's hit and miss counts; `runsc --network=none do
     /bin/true` back to back: p50/p99, runs/s. Ratios of both.
  2. one isolated call: each call waits until the pool (size 4) is full again, so every call
     is a hit: the cost of a call that comes alone, not what back-to-back calls get.
  3. an empty pool (size 0): every call boots its own sandbox (a cold start).
  4. design measurements at the runsc level (BENCH_DESIGN=1): booting a sandbox (run --detach)
     against restoring one from a checkpoint, and serving a call from a booted sandbox by
     `runsc exec` against our launcher.
Target (issue 4): warm p50 <= 0.3 x runsc do.

Environment: GATEHOUSE (the binary), GATE_BUILD_DIR (for the helper), optional BENCH_N (calls
per phase), BENCH_ROUNDS, BENCH_DESIGN. Needs root and a working runsc.
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


def hits_misses(gw, tool):
    return (metric(gw, "gatehouse_gvisor_pool_hits_total", tool) or 0,
            metric(gw, "gatehouse_gvisor_pool_misses_total", tool) or 0)


def call_ok(gw, tool):
    t0 = time.monotonic()
    r = gw.call(tool, {})
    took = ms(t0)
    assert r.status == 200 and r.json()["status"] == "succeeded", r.body
    return took


def runsc_do_once(root):
    t0 = time.monotonic()
    subprocess.run([RUNSC, "--root", root, "--network=none", "do", "/bin/true"], check=True,
                   env={"PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL)
    return ms(t0)


class Phase:
    def __init__(self):
        self.lat, self.secs, self.hits, self.misses = [], 0.0, 0, 0

    def row(self, label):
        n = len(self.lat)
        rate = "%6.1f /s" % (n / self.secs) if self.secs else ""
        return "  %-44s p50 %7.1f ms  p99 %7.1f ms  %s" % (
            label, pct(self.lat, 50), pct(self.lat, 99), rate)


def measure(n, rounds):
    pol = tempfile.mkdtemp(prefix="gh-bench-gvisor-")
    sizes = (1, 4)
    for size in sizes + (0,):
        harness.write_policy(pol, "gtrue_%d" % size,
                             "name: gtrue_%d\ndescription: bench\ncommand: [\"/bin/true\"]\n"
                             "isolation: gvisor\npool:\n  size: %d\n" % (size, size))
    root = tempfile.mkdtemp(prefix="gh-bench-runsc-")
    gw = harness.Gateway(pol).start()
    per = max(1, n // rounds)
    b2b = {size: Phase() for size in sizes}
    do = Phase()
    iso, cold = Phase(), Phase()
    try:
        for size in sizes:
            wait_pool(gw, "gtrue_%d" % size, size)
        for _ in range(rounds):
            for size in sizes:
                tool = "gtrue_%d" % size
                wait_pool(gw, tool, size)  # each block starts from a full pool, then no waiting
                h0, m0 = hits_misses(gw, tool)
                t0 = time.monotonic()
                for _ in range(per):
                    b2b[size].lat.append(call_ok(gw, tool))
                b2b[size].secs += time.monotonic() - t0
                h1, m1 = hits_misses(gw, tool)
                b2b[size].hits += h1 - h0
                b2b[size].misses += m1 - m0
            t0 = time.monotonic()
            for _ in range(per):
                do.lat.append(runsc_do_once(root))
            do.secs += time.monotonic() - t0
        for _ in range(max(5, n // 4)):
            wait_pool(gw, "gtrue_4", 4)
            iso.lat.append(call_ok(gw, "gtrue_4"))
        for _ in range(max(5, n // 4)):
            cold.lat.append(call_ok(gw, "gtrue_0"))
        return b2b, do, iso, cold
    finally:
        gw.stop()
        gw.cleanup()
        shutil.rmtree(pol, ignore_errors=True)
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
    rounds = int(os.environ.get("BENCH_ROUNDS", "4"))
    b2b, do, iso, cold = measure(N, rounds)
    do50 = pct(do.lat, 50)
    do_rate = len(do.lat) / do.secs
    print("gvisor tier, /bin/true through POST /v1/tools/<tool>/calls; %d calls per phase in %d "
          "rounds" % (len(do.lat), rounds))
    print(do.row("runsc --network=none do, back to back"))
    for size, ph in sorted(b2b.items()):
        print(ph.row("gateway, pool size %d, back to back" % size)
              + "  hits %d, misses %d" % (ph.hits, ph.misses))
    print(iso.row("one isolated call (pool 4 full before each)"))
    print(cold.row("empty pool (size 0): a cold start each"))
    for size, ph in sorted(b2b.items()):
        print("  back to back, pool %d: p50 %.2fx runsc do (target <= 0.30), rate %.2fx"
              % (size, pct(ph.lat, 50) / do50, (len(ph.lat) / ph.secs) / do_rate))
    print("  one isolated call: %.2fx runsc do; cold start: %.2fx"
          % (pct(iso.lat, 50) / do50, pct(cold.lat, 50) / do50))
    if os.environ.get("BENCH_DESIGN"):
        helper = os.path.join(harness.BUILD_DIR, "libexec", "gatehouse-gvisor-helper")
        boots, restores, ckpt, launches, execs = design_numbers(helper, max(5, N // 5))
        print("runsc level (median of %d):" % len(boots))
        print("  refill by boot (run --detach):     %7.1f ms" % statistics.median(boots))
        print("  refill by restore of a checkpoint: %7.1f ms  (checkpoint once: %.1f ms)"
              % (statistics.median(restores), ckpt))
        print("  call by launcher header on stdin:  %7.1f ms" % statistics.median(launches))
        print("  call by runsc exec:                %7.1f ms" % statistics.median(execs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
