"""The escape-probe suite (shared/SECURITY-PROBES.md), end to end: run the static
probe helper as a tool through the real `gatehouse serve` in every isolation
tier this machine offers, parse its JSON lines and compare them with
tests/probe/expected.json.

- process is the positive control: every probe the table marks `exposed` there
  must show its weakness, or the probe is broken.
- container and gvisor must show the table's outcome for every probe; any
  unexpected success is an escape and fails the test.
- Harness-side checks: the host canary survives kill(-1) (P07), a concurrent
  call sees none of another call's /tmp file, abstract socket or SysV shm and
  nothing is left for the next call (P29: counted only if the plant happened and a
  look ran while it was in place, by both probes' clock stamps; otherwise an error),
  no orphan survives (P37), a 600 MB
  flood is truncated at the cap with the gateway's RSS flat (P38), the deadline
  ends a sleeping tool (P40), traversal arguments never reach /etc/shadow (P26).
- A tier that cannot run here (microvm; gvisor without a working runsc) is
  printed with the reason and counted as skipped.
"""
import base64
import ctypes
import json
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

PROBE = os.path.join(harness.BUILD_POLICIES, "tools", "probe")
EXPECTED_PATH = os.path.join(harness.SOURCE_DIR, "tests", "probe", "expected.json")
ALL_PROBES = ["P%02d" % i for i in range(1, 42)]
# Resource probes get a call each in the sandboxes: hitting a cap may end the whole sandbox
# (gVisor's memory cap applies to the sandbox, not to one process), which is a pass.
RESOURCE_PROBES = ["P34", "P35", "P36", "P39"]
TIERS = ["process", "container", "gvisor", "microvm"]
MEMORY_MB = 128
DISK_MB = 32
FLOOD_CAP = 1 << 20

SCHEMA = """
arguments:
  type: object
  additionalProperties: true
  properties:
    gateway_port: {type: integer}
    webhook_port: {type: integer}
    canary_pid: {type: integer}
    canary_env: {type: string}
    destructive: {type: boolean}
    keep: {type: boolean}
    spin: {type: boolean}
    memory_mb: {type: integer}
    disk_mb: {type: integer}
    hold_ms: {type: integer}
    sleep_ms: {type: integer}
    workspace: {type: string}
    policy_file: {type: string}
    audit_dir: {type: string}
    p29: {type: string}
    tag: {type: string}
    only: {type: array, items: {type: string}}
    paths: {type: array, items: {type: string}}
"""


def policy_text(name, tier, tool, wall, output_bytes):
    fs = ""
    if tier in ("container", "gvisor", "microvm"):
        fs = "filesystem:\n  workspace: {size_mb: 16}\n"
    return ("name: %s\ndescription: Escape probes (%s tier).\ncommand: [\"%s\"]\nisolation: %s\n"
            "limits: {wall_timeout: %s, cpu_time: 60s, memory_mb: %d, pids: 64, disk_mb: %d,"
            " output_bytes: %d}\n%s%s") % (name, tier, tool, tier, wall, MEMORY_MB, DISK_MB,
                                            output_bytes, fs, SCHEMA)


def plant_escalators(tools_dir):
    """A setuid-root `id` and a `cat` with cap_setuid+ep beside the probe (P04). Both only print,
    so even where they are honoured they give nothing away; they live in a private temp dir."""
    idp = os.path.join(tools_dir, "id-suid")
    shutil.copy("/usr/bin/id", idp)
    os.chown(idp, 0, 0)
    os.chmod(idp, 0o4755)
    catp = os.path.join(tools_dir, "cat-fcap")
    shutil.copy("/bin/cat", catp)
    os.chmod(catp, 0o755)
    # struct vfs_cap_data, revision 2, effective bit set, permitted = CAP_SETUID (7).
    os.setxattr(catp, "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0))


def make_policy_dir(tier):
    d = tempfile.mkdtemp(prefix="gh-probe-%s-" % tier)
    os.chmod(d, 0o755)  # the tool runs as nobody and must reach its binary
    tools = os.path.join(d, "tools")
    os.mkdir(tools)
    os.chmod(tools, 0o755)
    probe = os.path.join(tools, "probe")
    shutil.copy(PROBE, probe)
    os.chmod(probe, 0o755)
    try:
        plant_escalators(tools)
    except OSError as e:
        print("note: could not plant P04 escalators: %s" % e)
    harness.write_policy(d, "probe", policy_text("probe", tier, probe, "120s", 262144))
    harness.write_policy(d, "probe-short", policy_text("probe-short", tier, probe, "3s", 65536))
    harness.write_policy(d, "probe-flood", policy_text("probe-flood", tier, probe, "60s", FLOOD_CAP))
    return d


def parse_lines(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if isinstance(j, dict) and "probe" in j:
            out[j["probe"]] = j
    return out


class Syscalls:
    """x86-64 syscall names and numbers as libseccomp knows them (the gateway's own library)."""

    def __init__(self):
        self.lib = ctypes.CDLL("libseccomp.so.2")
        self.lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        self.lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_char_p
        self.lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
        self.arch = ctypes.c_uint32(self.lib.seccomp_arch_native()).value

    def number(self, name):
        nr = self.lib.seccomp_syscall_resolve_name(name.encode())
        return nr if nr >= 0 else None

    def name(self, nr):
        n = self.lib.seccomp_syscall_resolve_num_arch(self.arch, nr)
        return n.decode() if n else None


def container_allowlist(sc):
    """The container tier's allowlist (sandboxes/container/allowlist.c) as numbers, plus clone
    (added by the shared compiler without namespace flags). None if it cannot be read."""
    try:
        with open(os.path.join(harness.SOURCE_DIR, "sandboxes", "container", "allowlist.c")) as f:
            names = set(re.findall(r'"([a-z0-9_]+)"', f.read()))
    except OSError:
        return None
    nrs = {sc.number(n) for n in names | {"clone"}}
    nrs.discard(None)
    return nrs


def raw_len(body, key):
    """Bytes the tool wrote: the base64 copy when the gateway gives one (the text form escapes
    bytes that are not UTF-8 as \\xNN), else the UTF-8 text."""
    if key + "_base64" in body:
        return len(base64.b64decode(body[key + "_base64"]))
    return len(body.get(key, "").encode())


def progress_of(text, probe):
    """The "# Pxx: ..." progress lines a probe wrote before its verdict (or before a cap hit)."""
    tag = "# %s: " % probe
    return "; ".join(l[len(tag):] for l in text.splitlines() if l.startswith(tag))


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def orphans(tag):
    """Host pids of P37's orphan for this run (it renames itself po-<tag>)."""
    comm = ("po-" + tag)[:15]
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/comm" % name) as f:
                    if f.read().strip() == comm:
                        found.append(int(name))
            except OSError:
                pass
    return found


class Row:
    def __init__(self, probe, tier, expected, outcome, errno="", detail=""):
        self.probe, self.tier, self.expected = probe, tier, expected
        self.outcome, self.errno, self.detail = outcome, errno, detail

    @property
    def ok(self):
        if self.outcome == "error":
            return False
        return self.expected == "any" or self.outcome == self.expected


class TierRun:
    """One gateway with the probe policies of one tier, and every check against it."""

    def __init__(self, tier, canary, webhook_port, expected):
        self.tier = tier
        self.sandboxed = tier != "process"
        self.canary = canary
        self.webhook_port = webhook_port
        self.expected = expected
        self.rows = []
        self.tag = secrets.token_hex(6)

    def exp(self, probe):
        return self.expected.get(probe, {}).get(self.tier, "blocked")

    def add(self, probe, outcome, errno="", detail="", expected=None):
        self.rows.append(Row(probe, self.tier, expected or self.exp(probe), outcome, errno, detail))

    def call(self, tool, args):
        r = self.gw.call(tool, args)
        try:
            body = r.json()
        except ValueError:
            body = {}
        return r, body

    def base_args(self, **kw):
        a = {"gateway_port": self.gw.port, "webhook_port": self.webhook_port,
             "canary_pid": self.canary.pid, "canary_env": "GW_CANARY",
             "destructive": self.sandboxed, "memory_mb": MEMORY_MB, "disk_mb": DISK_MB,
             "tag": self.tag, "policy_file": os.path.join(self.pdir, "probe.yaml"),
             "audit_dir": os.path.join(self.gw.state_dir, "audit")}
        a.update(kw)
        return a

    def start(self):
        """Start the gateway. Returns why the tier is unavailable (policies refused), or None.
        A tier whose policies load but whose first call fails is a failure, not a skip."""
        self.pdir = make_policy_dir(self.tier)
        self.gw = harness.Gateway(self.pdir, env={"GW_CANARY": "canary-" + secrets.token_hex(8)})
        try:
            self.gw.start()
        except RuntimeError as e:
            log = str(e).strip().splitlines()
            return "gateway refused the %s policies: %s" % (self.tier, " | ".join(log[-3:]))
        r, body = self.call("probe", self.base_args(only=["P01"], destructive=False))
        if r.status != 200 or "P01" not in parse_lines(body.get("stdout", "")):
            self.add("start", "error", "", "the first %s call gives no probe line: HTTP %d %s"
                     % (self.tier, r.status, r.body[:300]), expected="blocked")
        return None

    def stop(self):
        self.gw.stop()
        self.gw.cleanup()
        shutil.rmtree(self.pdir, ignore_errors=True)

    def run_main(self):
        separate = {"P29", "P37", "P38"} | (({"P07"} | set(RESOURCE_PROBES)) if self.sandboxed
                                            else set())
        only = [p for p in ALL_PROBES if p not in separate]
        r, body = self.call("probe", self.base_args(only=only))
        lines = parse_lines(body.get("stdout", "")) if r.status == 200 else {}
        if r.status != 200:
            print("main call: HTTP %d %s" % (r.status, r.body[:300]))
        elif body.get("status") not in ("succeeded", "oom", "resource_limit"):
            print("main call status %s: %s" % (body.get("status"), body.get("detail", "")))
        for p in only:
            j = lines.get(p)
            if j is None:
                self.add(p, "error", "", "no line (call status %s)" % body.get("status"))
            else:
                self.add(p, j["outcome"], j.get("errno", ""), j.get("detail", ""))

    def run_resources(self):
        if not self.sandboxed:
            return
        for p in RESOURCE_PROBES:
            r, body = self.call("probe", self.base_args(only=[p]))
            j = parse_lines(body.get("stdout", "")).get(p)
            status = body.get("status")
            if j is not None:
                self.add(p, j["outcome"], j.get("errno", ""),
                         "%s (call status %s)" % (j.get("detail", ""), status))
            elif status in ("oom", "resource_limit"):
                self.add(p, "blocked", "", "sandbox ended at its cap: call status %s (%s); progress: %s"
                         % (status, body.get("detail", ""), progress_of(body.get("stdout", ""), p)))
            else:
                self.add(p, "error", "", "no line: HTTP %d status %s %s"
                         % (r.status, status, body.get("detail", r.body[:200])))

    def check_sweep_allowlist(self):
        """P19 against the container allowlist (the gvisor tier's launcher installs the same one
        in the tool): every number that answered anything but EPERM/ENOSYS must be on it. Numbers no syscall owns are listed, not judged: on this
        host's kernel 335 (SIGILL) and 336 (ENXIO) answer before any seccomp filter runs."""
        sweep = [r for r in self.rows if r.probe == "P19"]
        if self.tier not in ("container", "gvisor") or not sweep or "reachable:" not in sweep[0].detail:
            return
        try:
            sc = Syscalls()
        except OSError as e:
            print("  note: no libseccomp for the P19 allowlist check: %s" % e)
            return
        allow = container_allowlist(sc)
        if allow is None:
            return
        reach = [int(x) for x in sweep[0].detail.split("reachable:")[-1].split() if x.isdigit()]
        extra = ["%d(%s)" % (n, sc.name(n)) for n in reach if n not in allow and sc.name(n)]
        unowned = [str(n) for n in reach if not sc.name(n)]
        self.add("P19-allowlist", "exposed" if extra else "blocked", "",
                 "%d reachable, %d allowed; reachable and not allowed: %s; numbers without a "
                 "syscall that answered: %s" % (len(reach), len(allow), " ".join(extra) or "none",
                                                " ".join(unowned) or "none"), expected="blocked")

    def run_p07(self):
        if not self.sandboxed:
            return
        self.call("probe", self.base_args(only=["P07"]))
        alive = self.canary.poll() is None
        self.add("P07", "blocked" if alive else "exposed", "",
                 "host canary %s after kill(-1) and kill(canary)" % ("alive" if alive else "DEAD"))

    def run_p29(self):
        """A call sees nothing of a concurrent call's /tmp file, abstract socket or SysV shm (P29),
        nor what a finished call left (P29-leftover). The plant reports when its objects existed
        and the look, which keeps looking for half the plant's hold, when it looked (CLOCK_REALTIME,
        one clock for the host and every sandbox here): the verdict counts only if a look fell
        inside the plant's window. A plant that failed, or looks that never met the plant, are an
        error: a check that cannot observe its precondition fails instead of passing."""
        hold_ms, tries = 6000, 3
        for attempt in range(1, tries + 1):
            plant = {}

            def planter():
                plant["r"] = self.call("probe", self.base_args(only=["P29"], p29="plant", hold_ms=hold_ms,
                                                               keep=self.sandboxed))
            t = threading.Thread(target=planter)
            t.start()
            # The plant call has started (its sandbox may still be booting: the stamps decide).
            running = self.wait_inflight(1, t.is_alive)
            r, body = (self.call("probe", self.base_args(only=["P29"], p29="look", hold_ms=hold_ms // 2))
                       if running else (None, {}))
            t.join()
            pr, pbody = plant["r"]
            pj = parse_lines(pbody.get("stdout", "")).get("P29")
            if pj is None or pj["outcome"] == "error" or "planted_ns=" not in pj.get("detail", ""):
                self.add("P29", "error", "", "the plant call did not plant: HTTP %d %s"
                         % (pr.status, pj or pbody.get("detail", pr.body[:200])))
                return
            if not running:  # a loaded host: the plant ran but /healthz never showed it in flight
                print("  note: P29 try %d: the plant call was never seen running; again" % attempt)
                continue
            lj = parse_lines(body.get("stdout", "")).get("P29")
            if lj is None or "looked_ns=" not in lj.get("detail", ""):
                self.add("P29", "error", "", "look call: HTTP %d %s" % (r.status, r.body[:200]))
                return
            stamp = lambda key: int(re.search(key + r"=(\d+)", pj["detail"] + " " + lj["detail"]).group(1))
            planted, released = stamp("planted_ns"), stamp("released_ns")
            first, last = (int(x) for x in re.search(r"looked_ns=(\d+)\.\.(\d+)", lj["detail"]).groups())
            seen, gap = stamp("seen_ns"), stamp("max_gap_ns")
            # Looks at most `gap` apart over [first, last]: one fell inside the window if the two
            # overlap by at least that much; a look that saw something saw it at `seen`.
            met = (planted <= seen <= released) if seen else min(last, released) - max(first, planted) >= gap
            if met:
                self.add("P29", lj["outcome"], lj.get("errno", ""),
                         "concurrent (try %d): %s" % (attempt, lj.get("detail", "")))
                break
            print("  note: P29 try %d: the looks (%d..%d, seen %d) missed the plant (%d..%d); again with a"
                  " longer hold" % (attempt, first, last, seen, planted, released))
            hold_ms *= 2
        else:
            self.add("P29", "error", "", "in %d tries no look ran while the plant was in place" % tries)
            return
        # The plant call is over (its objects kept, in the sandboxed tiers): a new call must not see them.
        r, body = self.call("probe", self.base_args(only=["P29"], p29="look", hold_ms=0))
        j = parse_lines(body.get("stdout", "")).get("P29")
        self.add("P29-leftover", j["outcome"] if j else "error", j.get("errno", "") if j else "",
                 "after a plant with keep=%s: %s" % (self.sandboxed, j.get("detail", "") if j else r.body[:200]),
                 expected="blocked")

    def wait_inflight(self, n, still_running, timeout=60):
        """Poll /healthz until n calls are in flight: True, or False if the caller's call ended
        first or the deadline passed."""
        deadline = time.monotonic() + timeout
        while self.gw.request("GET", "/healthz").json().get("inflight", 0) < n:
            if not still_running() or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def run_p37(self):
        spin = self.sandboxed
        r, body = self.call("probe-short", self.base_args(only=["P37"], spin=spin))
        deadline = time.monotonic() + 10
        while orphans(self.tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = orphans(self.tag)
        j = parse_lines(body.get("stdout", "")).get("P37") or {}
        planted = "not started" not in j.get("detail", "not started")
        outcome = "exposed" if left else "blocked" if planted else "error"
        self.add("P37", outcome, "", "call status %s; %d orphan(s) alive after the call; probe: %s"
                 % (body.get("status"), len(left), j.get("detail", "no line")), expected="blocked")
        for pid in left:
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def run_p38(self):
        if not self.sandboxed:
            self.add("P38", "skipped", "", "flood disarmed in the bare tier", expected="skipped")
            return
        before = rss_kb(self.gw.proc.pid)
        r, body = self.call("probe-flood", self.base_args(only=["P38"]))
        after = rss_kb(self.gw.proc.pid)
        size = sum(raw_len(body, k) for k in ("stdout", "stderr"))
        status = body.get("status")
        # The flood is 2 x 300 MB: a gateway that buffered it would grow by hundreds of MB.
        # 128 MB leaves room for allocator and ASan quarantine noise (~45 MB seen under ASan).
        bounded = (r.status == 200 and body.get("output_truncated") is True
                   and size <= 2 * FLOOD_CAP and after - before < 128 * 1024)
        self.add("P38", "blocked" if bounded else "exposed", "",
                 "HTTP %d status %s truncated=%s output=%d bytes (cap %d) gateway RSS %d->%d kB %s"
                 % (r.status, status, body.get("output_truncated"), size, FLOOD_CAP, before, after,
                    body.get("detail", "")),
                 expected="blocked")

    def run_p40(self):
        r, body = self.call("probe-short", self.base_args(only=["P40"], sleep_ms=20000))
        timed_out = body.get("status") == "timed_out"
        self.add("P40-deadline", "blocked" if timed_out else "exposed", "",
                 "sleep 20 s under a 3 s deadline: status %s" % body.get("status"), expected="blocked")

    def run_p26(self):
        sets = {"P26-args": ["../../etc/shadow", "/etc/shadow", "%2e%2e/%2e%2e/etc/shadow",
                             "../" * 1400 + "etc/shadow"],
                "P26-nul": ["a\u0000b", "../../etc/shadow\u0000.txt"]}
        for row, paths in sets.items():
            r, body = self.call("probe", self.base_args(only=["P26"], paths=paths))
            if 400 <= r.status < 500:
                self.add(row, "blocked", "", "rejected with HTTP %d" % r.status, expected="blocked")
                continue
            j = parse_lines(body.get("stdout", "")).get("P26")
            self.add(row, j["outcome"] if j else "error", j.get("errno", "") if j else "",
                     j.get("detail", "") if j else "HTTP %d %s" % (r.status, r.body[:200]),
                     expected="blocked")

    def run_all(self):
        for step in (self.run_main, self.check_sweep_allowlist, self.run_resources, self.run_p07, self.run_p29, self.run_p37, self.run_p38,
                     self.run_p40, self.run_p26):
            step()


def print_table(rows):
    print("%-13s %-9s %-8s %-8s %-12s %s" % ("probe", "tier", "expect", "got", "errno", "detail"))
    for r in rows:
        mark = "" if r.ok else "  <-- FAIL"
        print("%-13s %-9s %-8s %-8s %-12s %s%s" % (r.probe, r.tier, r.expected, r.outcome, r.errno,
                                                    r.detail[:200].replace("\n", " "), mark))
    sys.stdout.flush()


def main():
    if not os.path.exists(PROBE):
        harness.skip("probe helper not built at " + PROBE)
    if os.geteuid() != 0:
        harness.skip("needs root (plants a setuid binary, runs the canary as nobody)")
    with open(EXPECTED_PATH) as f:
        expected = {k: v for k, v in json.load(f).items() if k.startswith("P")}
    canary = subprocess.Popen(["sleep", "3600"], user=65534, group=65534,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    webhook = socket.socket()
    webhook.bind(("127.0.0.1", 0))
    webhook.listen(64)
    # A host control socket in the abstract namespace (the containerd CVE-2020-15257 shape):
    # visible to the bare tier, never to a sandbox with its own network namespace (P23).
    host_sock = socket.socket(socket.AF_UNIX)
    host_sock.bind("\0gatehouse-probe-host-" + secrets.token_hex(4))
    host_sock.listen(4)
    skipped, failed, all_rows = [], [], []
    only_tiers = [t for t in os.environ.get("GATE_PROBE_TIERS", ",".join(TIERS)).split(",") if t]
    try:
        for tier in only_tiers:
            run = TierRun(tier, canary, webhook.getsockname()[1], expected)
            why = run.start()
            if why and tier == "process":
                # The bare tier is the positive control and always available: not a skip.
                run.stop()
                all_rows.append(Row("start", tier, "blocked", "error", "", why))
                failed.append(all_rows[-1])
                continue
            if why:
                skipped.append((tier, why))
                run.stop()
                continue
            try:
                if not run.rows:  # the first call worked
                    run.run_all()
            finally:
                run.stop()
            if canary.poll() is not None:  # a dead canary must not hide later tiers' P07
                canary = subprocess.Popen(["sleep", "3600"], user=65534, group=65534)
            print("\n== %s tier ==" % tier)
            print_table(run.rows)
            counts = {}
            for r in run.rows:
                counts[r.outcome] = counts.get(r.outcome, 0) + 1
            controls = [r.probe for r in run.rows if r.expected == "exposed" and r.ok]
            print("%s: %s; positive controls shown: %s" % (
                tier, ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())),
                " ".join(controls) or "none"))
            all_rows += run.rows
            failed += [r for r in run.rows if not r.ok]
    finally:
        canary.kill()
        canary.wait()
        webhook.close()
        host_sock.close()
    results = os.path.join(harness.BUILD_DIR, "probe-results.json")
    try:
        with open(results, "w") as f:
            json.dump({"skipped": dict(skipped), "rows": [vars(r) for r in all_rows]}, f, indent=1)
        print("\nfull results: " + results)
    except OSError as e:
        print("\ncould not write %s: %s" % (results, e))
    print()
    for tier, why in skipped:
        print("SKIPPED tier %s: %s" % (tier, why))
    if failed:
        print("\n%d probe result(s) differ from tests/probe/expected.json:" % len(failed))
        for r in failed:
            kind = ("positive control broken" if r.tier == "process" and r.expected == "exposed"
                    else "ESCAPE" if r.outcome == "exposed" else "unexpected outcome")
            print("  %s %s: %s (expected %s, got %s) %s" % (r.tier, r.probe, kind, r.expected,
                                                            r.outcome, r.detail[:300]))
        sys.exit(1)
    if not all_rows:
        harness.skip("no tier could run: " + "; ".join("%s: %s" % s for s in skipped))
    print("OK: %d probe results match" % len(all_rows))


if __name__ == "__main__":
    main()
