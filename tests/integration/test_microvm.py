"""The microvm tier through the real `gatehouse serve`, booting real guests (TCG here).

- A call runs in a guest with a kernel of its own (its release differs from the host's);
  host processes and files are invisible, the gateway's port is unreachable, the guest
  has no /dev/kvm.
- QEMU runs jailed: unprivileged uid, its own namespaces, no capabilities, seccomp,
  a root that holds only its own files, a cgroup of its own, -sandbox on.
- Limits: the deadline kills the VM (timed_out), a memory hog ends as oom, an output
  flood is truncated at the cap, a fork bomb stops at the pids cap, a guest whose
  kernel panics ends the call as failed with the panic in the detail, and a guest that
  never answers is killed at the deadline.
- The warm pool: a claim runs the call on a restored guest (a hit), an empty pool boots
  cold (a miss), SIGHUP replaces every pooled guest.
- `microvm.accel: kvm` is refused at load on a host without KVM, naming the reason; a
  guest under KVM is skipped here, saying why.
- Many calls leave no process, cgroup, state file, mount or gateway fd behind.

Skips (exit 77) when this host cannot run the tier: not root, no QEMU, or the guest
kernel not built (sandboxes/microvm/guest/build.sh; scripts/test.sh builds it).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

QEMU = "/usr/bin/qemu-system-x86_64"
BUILD_SH = os.path.join(harness.SOURCE_DIR, "sandboxes", "microvm", "guest", "build.sh")
PROBE = os.path.join(harness.BUILD_POLICIES, "tools", "probe")
# Calls in the leftover check. Each costs a guest restore (a few hundred ms of TCG here) and
# CI runs the suite twice; GATE_MICROVM_LEAK_CALLS=1000 runs the full count.
LEAK_CALLS = int(os.environ.get("GATE_MICROVM_LEAK_CALLS", "40"))
# What the shell policies use, copied into the guest image with the libraries they link.
UTILS = ["/usr/bin/cat", "/usr/bin/uname", "/usr/bin/sleep", "/usr/bin/yes", "/usr/bin/head",
         "/usr/bin/tr", "/usr/bin/grep", "/usr/bin/id"]
MEMORY_MB = 96
HOST_SECRET = "/tmp/gh-microvm-host-secret-%d" % os.getpid()
TOOLS_DIR = tempfile.mkdtemp(prefix="gh-microvm-tools-")
PROBE_COPY = os.path.join(TOOLS_DIR, "probe")


def kernel_path():
    p = subprocess.run([BUILD_SH, "--path"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def why_unavailable():
    if os.geteuid() != 0:
        return "the microvm tier needs root (it jails QEMU in namespaces and cgroups)"
    if not os.access(QEMU, os.X_OK):
        return "qemu-system-x86_64 not installed (scripts/install-deps.sh installs it)"
    k = kernel_path()
    if not k or not os.path.exists(k):
        return "guest kernel not built at %s (run sandboxes/microvm/guest/build.sh)" % k
    if not os.path.exists(PROBE):
        return "probe helper not built at " + PROBE
    return None


def kvm_reason():
    """Why this host has no usable KVM, or None."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return None
    except OSError as e:
        return "/dev/kvm: %s" % e.strerror


def sh_policy(name, script, limits="wall_timeout: 90s", pool=0, extra=""):
    """A /bin/sh tool. Every shell policy has the same guest (image, memory, vCPUs), so the
    gateway boots one guest at load and all of them restore from its snapshot. Deadlines are
    generous: TCG on two cores shared with other work can be slow, and slowness is not what
    these tests are about."""
    return """name: %s
description: microvm test %s
command: ["/bin/sh", "-c", %s]
isolation: microvm
limits: {memory_mb: %d, cpu_time: 90s%s}
filesystem:
  read_only: %s
pool:
  size: %d
arguments: {type: object, additionalProperties: true}
%s""" % (name, name, json.dumps(script), MEMORY_MB, ", " + limits if limits else "",
         json.dumps(UTILS + [PROBE_COPY]), pool, extra)


FACTS = r"""
echo "release=$(uname -r)"
echo "uid=$(id -u)"
n=0; for d in /proc/[0-9]*; do n=$((n+1)); done; echo "nprocs=$n"
if [ -e /dev/kvm ]; then echo kvm=present; else echo kvm=absent; fi
if [ -e %s ]; then echo host_secret=visible; else echo host_secret=invisible; fi
echo "canary=$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' | grep -c 'gatehouse-cana[r]y')"
echo "stdin=$(cat)"
""" % HOST_SECRET

POLICIES = {
    "facts": sh_policy("facts", FACTS, pool=1),
    "cold": sh_policy("cold", "echo cold; uname -r"),
    "probe": sh_policy("probe", "exec " + PROBE_COPY),
    "sleeper": sh_policy("sleeper", "echo started; sleep 600", "wall_timeout: 2s"),
    "flood": sh_policy("flood", "yes microvm-flood", "wall_timeout: 90s, output_bytes: 65536"),
    "forkbomb": sh_policy("forkbomb",
                          "i=0; while [ $i -lt 64 ]; do sleep 5 & i=$((i+1)); done; wait",
                          "wall_timeout: 90s, pids: 8"),
}


def children(gw_pid):
    """(pid, exe) of the gateway's direct children."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == gw_pid:
                out.append((int(d), os.readlink("/proc/%s/exe" % d)))
        except (OSError, ValueError, IndexError):
            pass
    return out


def qemus(gw_pid):
    return sorted(p for p, exe in children(gw_pid) if exe == QEMU)


def status_field(pid, key):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"^%s:\s*(.*)$" % key, f.read(), re.M)
    return m.group(1).strip() if m else None


def metric(gw, name, tool=None):
    text = gw.request("GET", "/metrics").body.decode()
    label = '{tool="%s"}' % tool if tool else ""
    m = re.search(r"^%s%s (\d+)$" % (re.escape(name), re.escape(label)), text, re.M)
    return int(m.group(1)) if m else None


def wait_for(what, cond, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def wait_pool(gw, tool, n=1):
    wait_for("%s's pool to hold %d guest(s)" % (tool, n),
             lambda: metric(gw, "gatehouse_microvm_pool_size", tool) == n)


def jail_cgroups(gw_pid):
    """The names of the jail cgroups below the gateway's parent, in any hierarchy."""
    out = set()
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(root) == "gatehouse-microvm-%d" % gw_pid:
            out.update(dirs)
            dirs[:] = []
    return sorted(out)


def others(gw_pid):
    """The gateway's children that are not QEMU (other tiers' pool helpers)."""
    return sorted(p for p, exe in children(gw_pid) if exe != QEMU)


def setUpModule():
    why = why_unavailable()
    if why:
        shutil.rmtree(TOOLS_DIR, ignore_errors=True)
        harness.skip(why)
    os.chmod(TOOLS_DIR, 0o755)
    shutil.copy(PROBE, PROBE_COPY)
    with open(HOST_SECRET, "w") as f:
        f.write("secret\n")


def tearDownModule():
    shutil.rmtree(TOOLS_DIR, ignore_errors=True)
    if os.path.exists(HOST_SECRET):
        os.unlink(HOST_SECRET)


class Gateway:
    """A gateway with the given policies in a private directory."""

    def __init__(self, policies):
        self.pdir = tempfile.mkdtemp(prefix="gh-microvm-pol-")
        for name, text in policies.items():
            harness.write_policy(self.pdir, name, text)
        self.gw = harness.Gateway(self.pdir)

    def start(self):
        try:
            self.gw.start(timeout=300)  # every distinct guest boots once at load, under TCG
        except RuntimeError:
            self.gw.stop()
            self.gw.cleanup()
            shutil.rmtree(self.pdir, ignore_errors=True)
            raise
        return self.gw

    def stop(self):
        self.gw.stop()
        self.gw.cleanup()
        shutil.rmtree(self.pdir, ignore_errors=True)


class MicroVM(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A host process with a recognisable command line (argv[0]), which no guest may see.
        cls.canary = subprocess.Popen(["gatehouse-canary", "3600"], executable="/usr/bin/sleep")
        cls.g = Gateway(POLICIES)
        try:
            cls.gw = cls.g.start()
        except RuntimeError:
            cls.canary.kill()
            cls.canary.wait()
            raise
        # What must be back after every test here has run (the last test checks).
        wait_pool(cls.gw, "facts")
        pid = cls.gw.proc.pid
        cls.baseline = {"fds": len(os.listdir("/proc/%d/fd" % pid)),
                        "mounts": harness.host_mounts(),
                        "others": others(pid),
                        "state": sorted(os.listdir(os.path.join(cls.gw.state_dir, "microvm")))}

    @classmethod
    def tearDownClass(cls):
        cls.g.stop()
        cls.canary.kill()
        cls.canary.wait()

    def call(self, tool, args=None):
        r = self.gw.request("POST", "/v1/tools/%s/calls" % tool, {"arguments": args or {}},
                            timeout=300)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    # ---- what the tool sees ------------------------------------------------------------------

    def test_guest_kernel_host_invisible_no_kvm(self):
        res = self.call("facts", {"hello": "from the host"})
        self.assertEqual(res["status"], "succeeded", res)
        self.assertEqual(res["isolation"], "microvm")
        facts = dict(l.split("=", 1) for l in res["stdout"].splitlines() if "=" in l)
        self.assertNotEqual(facts["release"], os.uname().release, "the guest runs the host's kernel")
        self.assertTrue(facts["release"].startswith("6.1."), facts["release"])
        self.assertNotEqual(facts["uid"], "0")
        self.assertEqual(facts["kvm"], "absent")
        self.assertEqual(facts["host_secret"], "invisible")
        self.assertEqual(facts["canary"], "0", "a host process is visible in the guest")
        self.assertLessEqual(int(facts["nprocs"]), 8, res["stdout"])
        self.assertEqual(json.loads(facts["stdin"]), {"hello": "from the host"})

    def test_gateway_port_unreachable_minimal_dev_no_host_pids(self):
        res = self.call("probe", {"only": ["P30", "P22", "P05", "P23"], "gateway_port": self.gw.port,
                                  "webhook_port": self.gw.port, "canary_pid": self.canary.pid})
        self.assertEqual(res["status"], "succeeded", res)
        lines = {}
        for line in res["stdout"].splitlines():
            if line.startswith("{"):
                j = json.loads(line)
                lines[j["probe"]] = j
        for p in ("P30", "P22", "P05", "P23"):
            self.assertIn(p, lines, res["stdout"])
            self.assertEqual(lines[p]["outcome"], "blocked", lines[p])

    # ---- the jail around QEMU -------------------------------------------------------------------

    def test_qemu_runs_jailed(self):
        wait_pool(self.gw, "facts")
        pids = qemus(self.gw.proc.pid)
        self.assertTrue(pids, "no QEMU process")
        gw = self.gw.proc.pid
        for pid in pids:
            self.assertEqual(status_field(pid, "Uid").split()[0], "65534")
            self.assertEqual(status_field(pid, "NoNewPrivs"), "1")
            self.assertEqual(status_field(pid, "Seccomp"), "2")
            self.assertEqual(int(status_field(pid, "CapEff"), 16), 0)
            for ns in ("pid", "net", "mnt", "user", "ipc", "uts"):
                self.assertNotEqual(os.readlink("/proc/%d/ns/%s" % (pid, ns)),
                                    os.readlink("/proc/%d/ns/%s" % (gw, ns)),
                                    "QEMU shares the gateway's %s namespace" % ns)
            root = set(os.listdir("/proc/%d/root" % pid))
            self.assertLessEqual(root, {"usr", "var", "tmp", "proc", "dev", "etc", "bin", "lib",
                                        "lib64", "sbin", "lib32", "libx32"}, root)
            # Its own guest's directory is all it sees of the gateway's state (bound below its
            # /tmp when the state directory is there).
            state = os.path.join("/proc/%d/root" % pid, os.path.realpath(self.gw.state_dir)[1:])
            self.assertEqual(os.listdir(state), ["microvm"])
            self.assertEqual(len(os.listdir(os.path.join(state, "microvm"))), 1)
            with open("/proc/%d/cgroup" % pid) as f:
                self.assertIn("gatehouse-microvm-%d" % gw, f.read())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            self.assertIn(b"on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
                          argv)
            self.assertIn(b"-nodefaults", argv)
            self.assertFalse([a for a in argv if a.startswith(b"-net") or b"virtio-net" in a], argv)

    # ---- limits and outcomes --------------------------------------------------------------------

    def test_deadline_kills_the_vm(self):
        before = set(qemus(self.gw.proc.pid))
        res = self.call("sleeper")  # sleep 600: only the deadline can end it
        self.assertEqual(res["status"], "timed_out", res)
        # Killed before the answer, reaped just after it.
        wait_for("the timed-out VM to be gone",
                 lambda: not set(qemus(self.gw.proc.pid)) - before, timeout=30)

    def test_memory_hog_is_oom(self):
        # The probe's P35: malloc+memset, mmap(MAP_POPULATE) and a tmpfs fill of twice the
        # guest's memory, each in a child the OOM killer takes.
        res = self.call("probe", {"only": ["P35"], "destructive": True, "force": True,
                                  "memory_mb": MEMORY_MB, "disk_mb": 64})
        self.assertEqual(res["status"], "oom", res)
        self.assertIn("OOM kill in the guest", res["detail"])

    def test_output_flood_is_truncated(self):
        res = self.call("flood")
        self.assertEqual(res["status"], "output_truncated", res)
        self.assertTrue(res["output_truncated"])
        self.assertEqual(len(res["stdout"]), 65536)

    def test_fork_bomb_stops_at_pids_cap(self):
        res = self.call("forkbomb")
        self.assertTrue(res.get("pids_limit_hit"), res)
        self.assertEqual(res["status"], "resource_limit", res)

    # ---- the warm pool ------------------------------------------------------------------------

    def test_pool_hit_runs_the_call(self):
        wait_pool(self.gw, "facts")
        hits = metric(self.gw, "gatehouse_microvm_pool_hits_total", "facts")
        misses = metric(self.gw, "gatehouse_microvm_pool_misses_total", "facts")
        boots = metric(self.gw, "gatehouse_microvm_cold_boots_total")
        res = self.call("facts", {})
        self.assertEqual(res["status"], "succeeded", res)
        self.assertEqual(metric(self.gw, "gatehouse_microvm_pool_hits_total", "facts"), hits + 1)
        self.assertEqual(metric(self.gw, "gatehouse_microvm_pool_misses_total", "facts"), misses)
        self.assertEqual(metric(self.gw, "gatehouse_microvm_cold_boots_total"), boots)

    def test_pool_miss_boots_cold(self):
        misses = metric(self.gw, "gatehouse_microvm_pool_misses_total", "cold")
        boots = metric(self.gw, "gatehouse_microvm_cold_boots_total")
        res = self.call("cold")
        self.assertEqual(res["status"], "succeeded", res)
        self.assertIn("cold", res["stdout"])
        self.assertEqual(metric(self.gw, "gatehouse_microvm_pool_misses_total", "cold"), misses + 1)
        self.assertGreaterEqual(metric(self.gw, "gatehouse_microvm_cold_boots_total"), boots + 1)

    def test_zy_reload_replaces_the_pool(self):
        wait_pool(self.gw, "facts")
        old = set(qemus(self.gw.proc.pid))
        self.assertEqual(len(old), 1, old)
        self.gw.send_signal(signal.SIGHUP)
        new = wait_for("the old pooled guest to go and a new one to be parked",
                       lambda: (set(qemus(self.gw.proc.pid)) - old)
                       if not old & set(qemus(self.gw.proc.pid)) and
                       metric(self.gw, "gatehouse_microvm_pool_size", "facts") == 1 else None)
        self.assertEqual(len(new), 1, new)
        hits = metric(self.gw, "gatehouse_microvm_pool_hits_total", "facts")
        self.assertEqual(self.call("facts")["status"], "succeeded")
        self.assertEqual(metric(self.gw, "gatehouse_microvm_pool_hits_total", "facts"), hits + 1)

    def test_zz_many_calls_leave_nothing_behind(self):
        """After every outcome above (timeouts, OOM, flood, fork bomb, failures) and LEAK_CALLS
        more calls, back to back: the gateway holds what it held at start, no more."""
        gw = self.gw
        pid = gw.proc.pid
        for i in range(LEAK_CALLS):
            res = self.call("facts", {"i": i})
            self.assertEqual(res["status"], "succeeded", res)
        wait_pool(gw, "facts")
        # Finished guests are reaped in the background, just after their calls answered.
        wait_for("the finished guests to be reaped",
                 lambda: len(qemus(pid)) == 1 and len(jail_cgroups(pid)) == 1, timeout=60)
        self.assertEqual(others(pid), self.baseline["others"], "processes left over")
        self.assertLessEqual(len(os.listdir("/proc/%d/fd" % pid)), self.baseline["fds"],
                             "gateway fds leaked")
        self.assertEqual(harness.sandbox_mounts_since(self.baseline["mounts"]), [],
                         "mounts left over")
        self.assertEqual(sorted(os.listdir(os.path.join(gw.state_dir, "microvm"))),
                         self.baseline["state"])
        self.assertEqual(metric(gw, "gatehouse_microvm_cgroup_leaks_total"), 0)


class MicroVMPanic(unittest.TestCase):
    def test_kernel_panic_is_failed_with_the_panic(self):
        """A guest kernel that crashes. The test plants `ud2` over show_cpuinfo in a pooled
        guest's RAM, through /proc/<qemu>/mem as root on the host (a stand-in for a guest kernel
        bug: a restored QEMU has translated none of that code yet), then the call reads
        /proc/cpuinfo. The guest oopses, panics (the agent sets panic_on_oops), QEMU exits;
        the call must end `failed` with the panic line in its detail."""
        nm = subprocess.run(["nm", kernel_path()], capture_output=True, text=True)
        addr = [l.split()[0] for l in nm.stdout.splitlines() if l.endswith(" show_cpuinfo")]
        self.assertTrue(addr, "show_cpuinfo not in the guest kernel's symbols")
        # PVH loads the kernel at its link address minus __START_KERNEL_map (no KASLR).
        phys = int(addr[0], 16) - 0xffffffff80000000
        g = Gateway({"panic": sh_policy("panic", "cat /proc/cpuinfo", "wall_timeout: 30s", pool=1)})
        gw = g.start()
        try:
            wait_pool(gw, "panic")
            pids = qemus(gw.proc.pid)
            self.assertEqual(len(pids), 1, pids)
            base = guest_ram(pids[0])
            with open("/proc/%d/mem" % pids[0], "r+b", buffering=0) as mem:
                mem.seek(base + phys)
                mem.write(b"\x0f\x0b" * 8)
            r = gw.request("POST", "/v1/tools/panic/calls", {"arguments": {}}, timeout=300)
            self.assertEqual(r.status, 200, r.body)
            res = r.json()
            self.assertEqual(metric(gw, "gatehouse_microvm_pool_hits_total", "panic"), 1)
            self.assertEqual(res["status"], "failed", res)
            self.assertIn("the guest kernel crashed: Kernel panic", res["detail"])
            # The next guest is a fresh restore: unharmed.
            wait_pool(gw, "panic")
            r = gw.request("POST", "/v1/tools/panic/calls", {"arguments": {}}, timeout=300)
            self.assertIn("processor", r.json()["stdout"])
        finally:
            g.stop()


class MicroVMUnresponsive(unittest.TestCase):
    def test_guest_that_never_answers_is_killed(self):
        """A pooled guest whose QEMU is stopped (SIGSTOP, by the test, as root) takes the call
        and never answers: the deadline ends the call as timed_out and the VM is killed."""
        g = Gateway({"hang": sh_policy("hang", "echo never", "wall_timeout: 3s", pool=1)})
        gw = g.start()
        try:
            wait_pool(gw, "hang")
            pids = qemus(gw.proc.pid)
            self.assertEqual(len(pids), 1, pids)
            os.kill(pids[0], signal.SIGSTOP)
            r = gw.request("POST", "/v1/tools/hang/calls", {"arguments": {}}, timeout=300)
            self.assertEqual(r.status, 200, r.body)
            res = r.json()
            self.assertEqual(res["status"], "timed_out", res)
            self.assertEqual(res["stdout"], "")
            wait_for("the stopped QEMU to be killed and reaped",
                     lambda: pids[0] not in qemus(gw.proc.pid), timeout=30)
        finally:
            g.stop()


def guest_ram(pid):
    """Host address of guest physical address 0: QEMU's anonymous mapping of the RAM."""
    size = MEMORY_MB << 20
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if hi - lo == size and len(parts) == 5 and parts[1].startswith("rw"):
                return lo
    raise AssertionError("no %d MB anonymous mapping in /proc/%d/maps" % (MEMORY_MB, pid))


class MicroVMAccel(unittest.TestCase):
    def test_accel_kvm_refused_without_kvm(self):
        why = kvm_reason()
        if why is None:
            self.skipTest("this host has a working /dev/kvm: the refusal needs a host without one")
        g = Gateway({"kvm": sh_policy("kvm", "true", extra="microvm: {accel: kvm}\n")})
        with self.assertRaises(RuntimeError) as cm:
            g.start()
        self.assertIn("microvm.accel: kvm needs hardware virtualisation", str(cm.exception))

    def test_microvm_settings_only_with_isolation_microvm(self):
        d = tempfile.mkdtemp(prefix="gh-microvm-pol-")
        try:
            harness.write_policy(d, "x", "name: x\ndescription: x\ncommand: [\"/bin/true\"]\n"
                                 "isolation: container\nmicrovm: {accel: tcg}\n")
            p = subprocess.run([harness.GATEHOUSE, "policy", "check", d], capture_output=True,
                               text=True)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("'microvm' settings are only used with isolation: microvm",
                          p.stdout + p.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_guest_under_kvm(self):
        why = kvm_reason()
        if why is not None:
            self.skipTest("needs a working /dev/kvm, which this host does not have (%s)" % why)
        g = Gateway({"kvm": sh_policy("kvm", "uname -r", extra="microvm: {accel: kvm}\n")})
        gw = g.start()
        try:
            res = gw.call("kvm", {}).json()
            self.assertEqual(res["status"], "succeeded", res)
        finally:
            g.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
