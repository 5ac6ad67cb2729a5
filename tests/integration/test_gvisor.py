"""The gvisor tier through the real gateway: limits, environment, timeouts, output caps,
the warm pool (no state between calls, bursts larger than the pool) and leftovers.

Skips (exit 77) when the gateway has no gvisor tier here: not root, runsc missing, or
runsc unable to boot a sandbox on this machine.
"""
import glob
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

RUNSC = next((p for p in ("/usr/bin/runsc", "/usr/sbin/runsc", "/usr/local/bin/runsc")
              if os.access(p, os.X_OK)), None)

POLICIES = {
    "gtrue": """
command: ["/bin/true"]
pool:
  size: 2
""",
    "genv": """
command: ["/usr/bin/env"]
env:
  FOO: bar
pool:
  size: 1
""",
    "goom": """
command: ["/usr/bin/python3", "-c", "a=[]\\nwhile True: a.append(bytearray(1<<20))"]
limits:
  memory_mb: 32
pool:
  size: 0
""",
    # Forks until refused; prints how many children it got and the errno.
    "gfork": """
command: ["/usr/bin/python3", "-c", "import os,time\\nn=0\\ntry:\\n  while True:\\n    if os.fork()==0:\\n      time.sleep(60); os._exit(0)\\n    n+=1\\nexcept OSError as e: print(n, e.errno)"]
limits:
  pids: 8
pool:
  size: 0
""",
    "gyes": """
command: ["/usr/bin/yes"]
limits:
  output_bytes: 65536
pool:
  size: 0
""",
    # Spins; gVisor ignores RLIMIT_CPU, so the launcher enforces cpu_time.
    "gspin": """
command: ["/usr/bin/python3", "-c", "while True: pass"]
limits:
  cpu_time: 1s
  wall_timeout: 60s
pool:
  size: 0
""",
    # Shows what /tmp holds when it starts, then leaves a file behind.
    "gwrite": """
command: ["/bin/sh", "-c", "ls -A /tmp; echo ---; echo secret > /tmp/left-by-$GATEHOUSE_CALL_ID"]
pool:
  size: 2
""",
}

SLEEP_POLICY = """
command: ["/usr/bin/sleep", "60"]
limits:
  wall_timeout: 1s
pool:
  size: 0
"""


def policy_text(name, body):
    return "name: %s\ndescription: gvisor test %s\nisolation: gvisor\n%s" % (name, name, body.lstrip("\n"))


def make_policies(policies):
    d = tempfile.mkdtemp(prefix="gh-gvisor-pol-")
    for name, body in policies.items():
        harness.write_policy(d, name, policy_text(name, body))
    return d


def runsc_usable():
    """Why runsc cannot boot a sandbox here, or None."""
    if os.geteuid() != 0:
        return "the gvisor tier needs root"
    if not RUNSC:
        return "runsc not installed"
    root = tempfile.mkdtemp(prefix="gh-gvisor-probe-")
    try:
        # A probe of the machine only (runsc do passes the environment through; never for calls).
        p = subprocess.run([RUNSC, "--root", root, "--network=none", "do", "/bin/true"],
                           capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        if p.returncode != 0:
            return "runsc cannot run a sandbox here: " + (p.stderr.strip() or "exit %d" % p.returncode)[-300:]
    except subprocess.TimeoutExpired:
        return "runsc do /bin/true did not finish in 60 s"
    finally:
        subprocess.run(["rm", "-rf", root])
    return None


class Box:
    """Where one gateway's gVisor tier keeps its things."""

    def __init__(self, gw):
        self.gw = gw
        real = os.path.realpath(gw.state_dir)
        self.root = os.path.join(real, "gvisor", "root")
        self.bundles = os.path.join(real, "gvisor", "bundles")
        self.cgroup_parent = "gatehouse-gvisor-" + hashlib.sha256(real.encode()).hexdigest()[:12]

    def runsc_list(self):
        p = subprocess.run([RUNSC, "--root", self.root, "list", "--quiet"], capture_output=True, text=True)
        return [l for l in p.stdout.split("\n") if l.strip()]

    def bundle_dirs(self):
        return os.listdir(self.bundles) if os.path.isdir(self.bundles) else []

    def cgroups(self):
        """Sandbox ids that still have a cgroup in some controller."""
        paths = glob.glob("/sys/fs/cgroup/*/%s/gh-*" % self.cgroup_parent) + \
            glob.glob("/sys/fs/cgroup/%s/gh-*" % self.cgroup_parent)
        return sorted(set(os.path.basename(p) for p in paths))

    def processes(self):
        """runsc and keeper processes working for this state directory."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if self.root in cmd:
                out.append(cmd)
        return out

    def gateway_fds(self):
        return harness.settled_fds(self.gw.proc.pid)

    def metric(self, name, tool):
        text = self.gw.request("GET", "/metrics").body.decode()
        key = '%s{tool="%s"} ' % (name, tool)
        for line in text.split("\n"):
            if line.startswith(key):
                return int(float(line[len(key):]))
        return None

    def wait_pool_full(self, tool, size, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.metric("gatehouse_gvisor_pool_size", tool) == size:
                return True
            time.sleep(0.05)
        return False

    def wait_settled(self, expected, timeout=60):
        """Wait until exactly `expected` sandboxes exist (the pools), in every sense."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = (len(self.runsc_list()), len(self.bundle_dirs()), len(self.cgroups()))
            if state == (expected, expected, expected):
                return state
            time.sleep(0.2)
        return state


class GvisorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.poldir = make_policies(POLICIES)
        # A variable in the gateway's own environment that must never reach a tool.
        cls.gw = harness.Gateway(cls.poldir, env={"GATEHOUSE_TEST_SECRET": "leak"}).start()
        cls.box = Box(cls.gw)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        box = cls.box
        try:
            # After a clean stop nothing of the tier may remain.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (box.processes() or box.runsc_list()):
                time.sleep(0.1)
            assert not box.processes(), box.processes()
            assert not box.runsc_list(), box.runsc_list()
            assert not box.bundle_dirs(), box.bundle_dirs()
            assert not box.cgroups(), box.cgroups()
        finally:
            cls.gw.cleanup()
            subprocess.run(["rm", "-rf", cls.poldir])

    def call(self, tool, **kw):
        r = self.gw.call(tool, {}, **kw)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def test_true_succeeds(self):
        d = self.call("gtrue")
        self.assertEqual(d["status"], "succeeded", d)
        self.assertEqual(d["exit_code"], 0)
        self.assertEqual(d["isolation"], "gvisor")

    def test_env_contains_only_allowed_variables(self):
        d = self.call("genv")
        self.assertEqual(d["status"], "succeeded", d)
        got = sorted(l for l in d["stdout"].split("\n") if l)
        self.assertEqual(got, sorted(["FOO=bar", "GATEHOUSE_CALL_ID=" + d["call_id"], "GATEHOUSE_TOOL=genv"]))

    def test_memory_hog_is_oom(self):
        d = self.call("goom")
        self.assertEqual(d["status"], "oom", d)

    def test_fork_bomb_stops_at_pids_cap(self):
        d = self.call("gfork")
        self.assertEqual(d["status"], "succeeded", d)
        children, errno = (int(x) for x in d["stdout"].split())
        self.assertEqual(errno, 11)  # EAGAIN: the cap, not some other failure
        self.assertLessEqual(children + 1, 8)  # the tool and its children fit in limits.pids
        self.assertGreater(children, 0)

    def test_cpu_time_limit_is_resource_limit(self):
        d = self.call("gspin")
        self.assertEqual(d["status"], "resource_limit", d)
        self.assertEqual(d["detail"], "cpu_time limit reached")

    def test_output_flood_truncated(self):
        d = self.call("gyes")
        self.assertEqual(d["status"], "output_truncated", d)
        self.assertTrue(d["output_truncated"])
        self.assertLessEqual(len(d["stdout"].encode()) + len(d["stderr"].encode()), 65536)

    def test_pool_call_does_not_see_previous_calls_files(self):
        hits0 = self.box.metric("gatehouse_gvisor_pool_hits_total", "gwrite")
        for _ in range(4):
            self.assertTrue(self.box.wait_pool_full("gwrite", 2), "the pool did not fill")
            d = self.call("gwrite")
            self.assertEqual(d["status"], "succeeded", d)
            before = d["stdout"].split("---")[0].strip()
            self.assertEqual(before, "", "a previous call's /tmp is visible: %r" % before)
        # Every one of them was served by a warm sandbox.
        self.assertEqual(self.box.metric("gatehouse_gvisor_pool_hits_total", "gwrite"), hits0 + 4)

    def test_burst_of_twice_the_pool_completes(self):
        self.assertTrue(self.box.wait_pool_full("gtrue", 2), "the pool did not fill")
        hits0 = self.box.metric("gatehouse_gvisor_pool_hits_total", "gtrue")
        misses0 = self.box.metric("gatehouse_gvisor_pool_misses_total", "gtrue")
        results = [None] * 4

        def one(i):
            results[i] = self.gw.call("gtrue", {})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["status"], "succeeded", r.body)
        hits = self.box.metric("gatehouse_gvisor_pool_hits_total", "gtrue") - hits0
        misses = self.box.metric("gatehouse_gvisor_pool_misses_total", "gtrue") - misses0
        self.assertEqual(hits + misses, 4)
        self.assertGreaterEqual(misses, 1)  # more calls than warm sandboxes: some cold starts

    def test_zz_no_leftovers_after_200_calls(self):
        pools = 2 + 1 + 2  # gtrue, genv, gwrite
        self.assertTrue(self.box.wait_pool_full("gtrue", 2))
        self.assertEqual(self.box.wait_settled(pools), (pools, pools, pools))
        fds0 = self.box.gateway_fds()
        procs0 = len(self.box.processes())
        for i in range(200):
            d = self.call("gtrue")
            self.assertEqual(d["status"], "succeeded", (i, d))
        for tool, size in (("gtrue", 2), ("genv", 1), ("gwrite", 2)):
            self.assertTrue(self.box.wait_pool_full(tool, size), tool)
        self.assertEqual(self.box.wait_settled(pools), (pools, pools, pools))
        self.assertEqual(self.box.gateway_fds(), fds0)
        self.assertEqual(len(self.box.processes()), procs0)


class GvisorTimeoutTest(unittest.TestCase):
    """A gateway with one pool-less tool, so that afterwards nothing at all may exist."""

    def test_timeout_kills_and_deletes_the_sandbox(self):
        poldir = make_policies({"gsleep": SLEEP_POLICY})
        gw = harness.Gateway(poldir).start()
        try:
            box = Box(gw)
            d = gw.call("gsleep", {}).json()
            self.assertEqual(d["status"], "timed_out", d)
            # Deleted before the call returned.
            self.assertEqual(box.runsc_list(), [])
            self.assertEqual(box.processes(), [])
            self.assertEqual(box.bundle_dirs(), [])
            self.assertEqual(box.cgroups(), [])
        finally:
            gw.stop()
            gw.cleanup()
            subprocess.run(["rm", "-rf", poldir])


class GvisorCrashTest(unittest.TestCase):
    """A gateway killed with SIGKILL: its sandboxes die with it, and the next gateway on the same
    state directory removes what runsc still remembers of them."""

    def test_killed_gateway_leaves_nothing_after_restart(self):
        poldir = make_policies({"gtrue": POLICIES["gtrue"]})
        state = tempfile.mkdtemp(prefix="gh-gvisor-crash-")
        try:
            gw = harness.Gateway(poldir, state_dir=state).start()
            box = Box(gw)
            self.assertTrue(box.wait_pool_full("gtrue", 2))
            old = set(box.runsc_list())
            self.assertEqual(len(old), 2)
            gw.kill9()
            # The keepers see the gateway's lifeline close and kill their sandboxes.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and box.processes():
                time.sleep(0.1)
            self.assertEqual(box.processes(), [])
            gw2 = harness.Gateway(poldir, state_dir=state).start()
            try:
                box2 = Box(gw2)
                self.assertTrue(box2.wait_pool_full("gtrue", 2))
                self.assertEqual(box2.wait_settled(2), (2, 2, 2))
                self.assertFalse(old & set(box2.runsc_list()), "stale sandboxes still listed")
                self.assertFalse(old & set(box2.bundle_dirs()), "stale bundles still present")
                self.assertFalse(old & set(box2.cgroups()), "stale cgroups still present")
            finally:
                gw2.stop()
            self.assertEqual(box2.processes(), [])
        finally:
            subprocess.run(["rm", "-rf", poldir, state])


if __name__ == "__main__":
    if not harness.GATEHOUSE or not os.path.exists(harness.GATEHOUSE):
        harness.skip("GATEHOUSE binary not set")
    why = runsc_usable()
    if why:
        harness.skip(why)
    unittest.main(verbosity=2)
