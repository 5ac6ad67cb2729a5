"""The container tier through the real `gatehouse serve`: a call succeeds; the tool
sees its own hostname, an unprivileged uid mapping, only loopback and a read-only
root; the memory cap ends in `oom`, the pids cap in `resource_limit` with
pids_limit_hit; a sleeper past its deadline is timed out with nothing left behind;
an output flood is truncated; a read-only path that vanished after load fails the
call with an error naming the step; and 1000 calls leave no processes, cgroups,
mounts, state files or gateway fds behind."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def sh(name, script, extra=""):
    return """
name: %s
description: container test tool %s
command: ["/bin/sh", "-c", %s]
isolation: container
%s
""" % (name, name, json.dumps(script), extra)


FACTS = r"""
echo "hostname=$(hostname)"
echo "uid=$(id -u) gid=$(id -g)"
echo "uid_map=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')"
echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ',')"
echo "routes=$(tail -n +2 /proc/net/route | wc -l)"
for p in /x /usr/x /etc/x /bin/x; do
  if touch "$p" 2>/dev/null; then echo "wrote $p"; else echo "rofs $p"; fi
done
touch /tmp/ok && echo "tmp=writable"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "nprocs=$(ls -d /proc/[0-9]* | wc -l)"
"""

POLICIES = {
    "ok": """
name: ok
description: true
command: ["/bin/true"]
isolation: container
""",
    "facts": sh("facts", FACTS),
    "hog": sh("hog", "python3 -c 'b = bytearray(256 << 20); print(len(b))'",
              "limits: {memory_mb: 32, wall_timeout: 20s}"),
    "forkbomb": sh("forkbomb", "i=0; while [ $i -lt 64 ]; do sleep 5 & i=$((i+1)); done; wait",
                   "limits: {pids: 8, wall_timeout: 20s}"),
    "sleeper": sh("sleeper", "(setsid sleep 37.25 &); sleep 37.25",
                  "limits: {wall_timeout: 700ms}"),
    "flood": """
name: flood
description: floods stdout
command: ["/usr/bin/yes", "container-flood"]
isolation: container
limits: {output_bytes: 65536, wall_timeout: 20s}
""",
}


def gateway_children(pid):
    """Every process whose parent is pid, with its command line."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    kids.append((int(d), f.read()))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def processes_with(marker):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if marker in f.read():
                        found.append(int(d))
            except OSError:
                pass
    return found


def call_cgroups(gw_pid):
    """Every cgroup directory below the gateway's parents, in every hierarchy."""
    out = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(root) == "gatehouse-%d" % gw_pid:
            out.extend(os.path.join(root, d) for d in dirs)
            dirs[:] = []
    return sorted(out)




def wait_for(what, cond, timeout=10.0, interval=0.02):
    """Poll cond() until it is true; fail naming what was awaited when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out waiting for: %s" % what)
        time.sleep(interval)


def primed_children(gw_pid):
    """The gateway's children (pool sandboxes are its children) whose setup has ended: their
    seccomp filter is installed, which is the last step before they wait for their call."""
    out = []
    for pid, _ in gateway_children(gw_pid):
        try:
            with open("/proc/%d/status" % pid) as f:
                if "\nSeccomp:\t2\n" in f.read():
                    out.append(pid)
        except OSError:
            pass
    return out


def pool_slots(gw):
    for line in gw.request("GET", "/metrics").body.decode().splitlines():
        if line.startswith("gatehouse_container_pool_slots "):
            return int(line.split()[1])
    return 0


def pool_settled(gw):
    """Every pool slot has its helper and its next child (2 processes a slot)."""
    n = pool_slots(gw)
    return n > 0 and len(gateway_children(gw.proc.pid)) == 2 * n


class ContainerTier(unittest.TestCase):
    """Through the helper pool (calls start in sandboxes prepared ahead of time)."""
    ENV = {}

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            harness.skip("the container tier needs root (uid maps, cgroups)")
        cls.pdir = tempfile.mkdtemp(prefix="gh-ct-pol-")
        for name, text in POLICIES.items():
            harness.write_policy(cls.pdir, name, text)
        cls.gw = harness.Gateway(cls.pdir, env=cls.ENV).start()
        r = cls.gw.call("ok")
        if r.status != 200 and b"not available" in r.body:
            cls.gw.stop()
            harness.skip("container tier unavailable here: %s" % r.body.decode())

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()
        shutil.rmtree(cls.pdir, ignore_errors=True)

    def call(self, tool):
        r = self.gw.call(tool)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def test_true_succeeds(self):
        res = self.call("ok")
        self.assertEqual(res["status"], "succeeded", res)
        self.assertEqual(res["isolation"], "container")

    def test_identity_hostname_network_and_readonly_root(self):
        res = self.call("facts")
        self.assertEqual(res["status"], "succeeded", res)
        facts = {}
        for line in res["stdout"].splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                facts[k] = v.strip()
        out = res["stdout"]
        self.assertEqual(facts["hostname"], "sandbox")
        self.assertNotEqual(facts["uid"].split()[0], "0")
        inside, outside, count = facts["uid_map"].split()
        self.assertNotEqual(outside, "0", "sandbox uid maps to host root")
        self.assertEqual(count, "1")
        self.assertEqual(facts["ifaces"], "lo,")
        self.assertEqual(facts["routes"], "0")
        for p in ("/x", "/usr/x", "/etc/x", "/bin/x"):
            self.assertIn("rofs " + p, out)
        self.assertEqual(facts["tmp"], "writable")
        self.assertEqual(facts["pid1"], "gatehouse-init")
        self.assertLessEqual(int(facts["nprocs"]), 6)

    def test_memory_hog_is_oom(self):
        res = self.call("hog")
        self.assertEqual(res["status"], "oom", res)

    def test_fork_bomb_stops_at_pids_cap(self):
        res = self.call("forkbomb")
        self.assertTrue(res.get("pids_limit_hit"), res)
        self.assertEqual(res["status"], "resource_limit", res)

    def test_sleeper_times_out_and_leaves_nothing(self):
        res = self.call("sleeper")
        self.assertEqual(res["status"], "timed_out", res)
        deadline = time.monotonic() + 5
        while processes_with(b"37.25") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(processes_with(b"37.25"), [])

    def test_output_flood_is_truncated(self):
        res = self.call("flood")
        self.assertEqual(res["status"], "output_truncated", res)
        self.assertTrue(res["output_truncated"])
        self.assertLessEqual(len(res["stdout"]), 65536)


class ContainerTierDirect(ContainerTier):
    """Without the pool: every call clones its sandbox from the gateway and moves it into a
    fresh cgroup (what calls beyond the pool's size do)."""
    ENV = {"GATEHOUSE_CONTAINER_POOL": "0"}


class ContainerSetupFailure(unittest.TestCase):
    def test_vanished_read_only_path_fails_naming_the_step(self):
        pdir = tempfile.mkdtemp(prefix="gh-ct-pol-")
        gone = tempfile.mkdtemp(prefix="gh-ct-gone-")
        harness.write_policy(pdir, "ro", """
name: ro
description: binds a directory that will vanish
command: ["/bin/true"]
isolation: container
filesystem:
  read_only: ["/usr", "%s"]
""" % gone)
        try:
            with harness.Gateway(pdir) as gw:
                # One good call first: the pool then holds a sandbox set up for this policy
                # ahead of time, which must notice the path is gone too.
                self.assertEqual(gw.call("ro").json()["status"], "succeeded")
                wait_for("a sandbox primed for the policy", lambda: primed_children(gw.proc.pid))
                os.rmdir(gone)
                r = gw.call("ro")
                self.assertEqual(r.status, 500, r.body)
                err = r.json()["error"]
                self.assertEqual(err["code"], "sandbox_setup_failed")
                self.assertIn("open_tree %s: ENOENT" % gone, err["message"])
                fins = [x for x in harness.audit_records(gw.state_dir)
                        if "open_tree" in json.dumps(x)]
                self.assertTrue(fins, "the audit log does not record the failed step")
        finally:
            shutil.rmtree(pdir, ignore_errors=True)
            shutil.rmtree(gone, ignore_errors=True)


def cgroup_of(pid, controller):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return path
    return None


class ContainerPool(unittest.TestCase):
    def test_pool_processes_start_inside_their_cgroups(self):
        """Every helper and warm sandbox the gateway keeps is already inside a pool cgroup
        (a sandbox started before its helper was moved would escape the limits)."""
        pdir = tempfile.mkdtemp(prefix="gh-ct-pol-")
        harness.write_policy(pdir, "ok", POLICIES["ok"])
        try:
            with harness.Gateway(pdir) as gw:
                gw.call("ok")
                wait_for("a primed sandbox", lambda: primed_children(gw.proc.pid))
                kids = gateway_children(gw.proc.pid)
                self.assertTrue(kids, "no pool processes")
                for pid, _ in kids:
                    for ctrl in ("pids", "memory"):
                        path = cgroup_of(pid, ctrl) or ""
                        self.assertIn("/gatehouse-%d/pool" % gw.proc.pid, path,
                                      "pid %d is in %s cgroup %s" % (pid, ctrl, path))
        finally:
            shutil.rmtree(pdir, ignore_errors=True)

    def test_pool_dies_with_a_killed_gateway(self):
        pdir = tempfile.mkdtemp(prefix="gh-ct-pol-")
        harness.write_policy(pdir, "ok", POLICIES["ok"])
        gw = harness.Gateway(pdir)
        try:
            gw.start()
            gw.call("ok")
            wait_for("a primed sandbox", lambda: primed_children(gw.proc.pid))
            kids = [pid for pid, _ in gateway_children(gw.proc.pid)]
            self.assertTrue(kids)
            gw.kill9()

            def running(p):
                try:
                    with open("/proc/%d/stat" % p) as f:
                        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
                except OSError:
                    return False
            wait_for("the pool processes to die with the gateway",
                     lambda: not [p for p in kids if running(p)])
        finally:
            gw.cleanup()
            shutil.rmtree(pdir, ignore_errors=True)


SHM_FILL = """python3 -c '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shmid = libc.shmget(0, 56 << 20, 0o1600)
addr = libc.shmat(shmid, None, 0)
assert shmid >= 0 and addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
ctypes.memset(addr, 120, 56 << 20)
print(shmid)
'"""


def slot_memory_usage(gw_pid):
    """A function reading the memory use of the (only) pool slot's cgroup, v1 or v2."""
    helper = gateway_children(gw_pid)[0][0]
    v1 = cgroup_of(helper, "memory")
    if v1 is not None:
        path = "/sys/fs/cgroup/memory%s/memory.usage_in_bytes" % v1
    else:
        path = "/sys/fs/cgroup%s/memory.current" % cgroup_of(helper, "")

    def read():
        with open(path) as f:
            return int(f.read())
    return read


class ContainerPolicyLoad(unittest.TestCase):
    def test_denying_what_init_needs_fails_to_load(self):
        """init waits for the tool with rt_sigtimedwait and wait4 under the policy's filter: a
        policy denying one would leave it spinning or reporting a tool still running as done."""
        pdir = tempfile.mkdtemp(prefix="gh-ct-pol-")
        try:
            for name in ("rt_sigtimedwait", "wait4"):
                harness.write_policy(pdir, "d", sh("d", "true", "seccomp: {deny: [%s]}" % name))
                r = subprocess.run([harness.GATEHOUSE, "policy", "check", pdir],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 1, r)
                self.assertIn("'%s' cannot be denied in the container tier" % name,
                              r.stdout + r.stderr)
        finally:
            shutil.rmtree(pdir, ignore_errors=True)


class ContainerScratchPages(unittest.TestCase):
    def test_finished_calls_tmp_does_not_count_against_the_next_call(self):
        """Regression (issue 10 item 8): a pool slot kept the mount namespace of its finished
        call, and with it the pages of that call's /tmp, charged to the slot's memory cgroup:
        the next call in the slot hit its memory cap early. The same for a SysV shared memory
        segment left behind, which lived on with the call's IPC namespace. One slot, so every
        call shares it."""
        pdir = tempfile.mkdtemp(prefix="gh-ct-pol-")
        limits = "limits: {memory_mb: 96, disk_mb: 64, wall_timeout: 30s}"
        harness.write_policy(pdir, "fill", sh(
            "fill", "dd if=/dev/zero of=/tmp/fill bs=1M count=56 2>&1 | tail -1", limits))
        harness.write_policy(pdir, "alloc", sh(
            "alloc", "python3 -c 'b = b\"x\" * (56 << 20); print(len(b))'", limits))
        # A SysV shared memory segment, left behind (no IPC_RMID) and touched.
        harness.write_policy(pdir, "shm", sh("shm", SHM_FILL, limits))
        gw = harness.Gateway(pdir, env={"GATEHOUSE_CONTAINER_POOL": "1"}).start()
        try:
            self.assertEqual(pool_slots(gw), 1)
            usage = slot_memory_usage(gw.proc.pid)
            for filler in ("fill", "shm", "fill", "shm"):
                before = {p for p, _ in gateway_children(gw.proc.pid)}
                res = gw.call(filler).json()
                self.assertEqual(res["status"], "succeeded", res)
                # The slot's next child exists only once the call's pages are gone.
                wait_for("the slot's next child", lambda: [
                    p for p, _ in gateway_children(gw.proc.pid) if p not in before],
                    timeout=30, interval=0.001)
                self.assertLess(usage(), 32 << 20,
                                "the finished %s call's pages are still charged" % filler)
                res = gw.call("alloc").json()
                self.assertEqual(res["status"], "succeeded", res)
                self.assertEqual(res["stdout"], "%d\n" % (56 << 20))
        finally:
            gw.stop()
            gw.cleanup()
            shutil.rmtree(pdir, ignore_errors=True)


class ContainerPrimedSandboxes(unittest.TestCase):
    def test_replaced_tool_directory_is_seen_by_the_next_call(self):
        """The pool sets sandboxes up ahead of their call; a tool directory swapped since
        (a deploy renaming a new release into place) must not run the old tool."""
        pdir = tempfile.mkdtemp(prefix="gh-ct-pol-")
        base = tempfile.mkdtemp(prefix="gh-ct-tool-")
        os.chmod(base, 0o755)
        tool = os.path.join(base, "current")

        def release(word):
            d = tempfile.mkdtemp(dir=base)
            os.chmod(d, 0o755)
            with open(os.path.join(d, "run"), "w") as f:
                f.write("#!/bin/sh\necho %s\n" % word)
            os.chmod(os.path.join(d, "run"), 0o755)
            return d

        os.rename(release("one"), tool)
        harness.write_policy(pdir, "rel", """
name: rel
description: runs the current release
command: ["%s/run"]
isolation: container
""" % tool)
        try:
            with harness.Gateway(pdir) as gw:
                for _ in range(3):  # the slot the calls land on primes a sandbox for "one"
                    self.assertEqual(gw.call("rel").json()["stdout"], "one\n")
                wait_for("a primed sandbox", lambda: primed_children(gw.proc.pid))
                os.rename(tool, tool + ".old")
                os.rename(release("two"), tool)
                for _ in range(10):
                    res = gw.call("rel").json()
                    self.assertEqual(res["status"], "succeeded", res)
                    self.assertEqual(res["stdout"], "two\n")
        finally:
            shutil.rmtree(pdir, ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)


class ContainerPoolReload(unittest.TestCase):
    def test_pool_never_serves_a_sandbox_primed_for_the_previous_policy(self):
        # Regression: the pool matched primed sandboxes by the image's address, which the next
        # policy set could reuse after a SIGHUP; the call then ran the old policy.
        d = tempfile.mkdtemp(prefix="gh-ct-reload-")

        def write(word):
            harness.write_policy(d, "t", """
name: t
description: prints %s
command: ["/bin/sh", "-c", "echo %s"]
isolation: container
""" % (word, word))

        def serving(word):
            tools = json.loads(gw.request("GET", "/v1/tools").body)["tools"]
            return any(t["description"] == "prints " + word for t in tools)

        write("W000")
        gw = harness.Gateway(d, env={"GATEHOUSE_CONTAINER_POOL": "1"}).start()
        try:
            n = 1
            for it in range(10):
                gw.call("t", {})  # primes the slot for the current policy
                for _ in range(1 + it % 3):
                    expected = "W%03d" % n
                    write(expected)
                    n += 1
                    gw.send_signal(signal.SIGHUP)
                    wait_for("the policy set with %s" % expected, lambda: serving(expected))
                out = gw.call("t", {}).json()["stdout"].strip()
                self.assertEqual(out, expected, "round %d ran a stale policy" % it)
        finally:
            gw.stop()
            gw.cleanup()
            shutil.rmtree(d, ignore_errors=True)


class ContainerLeaks(unittest.TestCase):
    def test_1000_calls_leave_nothing_behind(self):
        pdir = tempfile.mkdtemp(prefix="gh-ct-pol-")
        harness.write_policy(pdir, "ok", POLICIES["ok"])
        try:
            with harness.Gateway(pdir) as gw:
                pid = gw.proc.pid
                self.assertEqual(gw.call("ok").json()["status"], "succeeded")
                wait_for("every pool slot with its next child", lambda: pool_settled(gw))
                fds = len(os.listdir("/proc/%d/fd" % pid))
                kids = gateway_children(pid)
                cgroups = call_cgroups(pid)
                mounts = harness.host_mounts()
                state = sorted(os.listdir(gw.state_dir))
                for i in range(1000):
                    r = gw.call("ok")
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(r.json()["status"], "succeeded", r.body)
                # The slot of the last call makes its next child once the call has ended.
                wait_for("every pool slot with its next child", lambda: pool_settled(gw))
                # A connection still closing holds an fd for a moment (either snapshot may see
                # one): wait until no more are open than before; a leak stays.
                nfds = lambda: len(os.listdir("/proc/%d/fd" % pid))  # noqa: E731
                wait_for("no more gateway fds than before (%d)" % fds, lambda: nfds() <= fds)
                # Pool helpers and their warm children stay (a warm child is replaced by a new
                # one with each call), so the count is what must not grow.
                self.assertEqual(len(gateway_children(pid)), len(kids), "processes left over")
                self.assertEqual(call_cgroups(pid), cgroups, "cgroups left over")
                self.assertEqual(harness.sandbox_mounts_since(mounts), [], "mounts left over")
                self.assertEqual(sorted(os.listdir(gw.state_dir)), state, "state files left over")
            # After a clean stop, not even the gateway's parent cgroups remain.
            self.assertEqual(call_cgroups(pid), [])
            for root, dirs, _ in os.walk("/sys/fs/cgroup"):
                self.assertNotIn("gatehouse-%d" % pid, dirs)
        finally:
            shutil.rmtree(pdir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
