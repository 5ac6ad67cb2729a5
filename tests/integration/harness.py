"""Shared harness for integration tests: start the real `gatehouse serve` on a
free loopback port with a temporary state directory, talk HTTP to it, stop it.

Environment (set by ctest): GATEHOUSE (binary), GATE_SOURCE_DIR, GATE_BUILD_DIR.
A test that cannot run here calls skip("why"), which prints the reason and
exits 77 (ctest counts it as skipped).
"""
import atexit
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

GATEHOUSE = os.environ.get("GATEHOUSE", "")
SOURCE_DIR = os.environ.get("GATE_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("GATE_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
# The build copies policies/*.yaml next to the tools it compiles.
BUILD_POLICIES = os.path.join(BUILD_DIR, "policies")

# Every temporary file and directory a test makes (tempfile.*) lives in one directory of this
# test process, removed when it exits: nothing piles up in /tmp run after run (where it would
# also slow down the process tier's end-of-call sweep). 0711: tools may reach the paths a test
# hands them (each mkdtemp directory is 0700 unless the test opens it) but cannot list others.
tempfile.tempdir = tempfile.mkdtemp(prefix="ght-")
os.chmod(tempfile.tempdir, 0o711)
atexit.register(shutil.rmtree, tempfile.tempdir, True)


def skip(why):
    print("SKIP: " + why, flush=True)
    sys.exit(77)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


def own_tool_uids():
    """A --tool-uids range of this gateway's own. Test suites run side by side on one host (two
    engineers, CI next to a developer): gateways sharing the default range would share tool uids,
    and a starting gateway that owns the range kills every process under it, including another
    suite's running tools (README, "Several gateways on one host")."""
    return "%d:1024" % (1900000000 + 1024 * (1 + random.randrange(400000)))


class Gateway:
    """A running gatehouse. Use as a context manager or call start()/stop()."""

    def __init__(self, policies, state_dir=None, extra_args=(), env=None, keep_state=False,
                 binary=None):
        self.binary = binary or GATEHOUSE
        self.policies = policies
        self.own_state = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="gh-state-")
        self.extra_args = list(extra_args)
        if "--tool-uids" not in self.extra_args:
            self.extra_args += ["--tool-uids", own_tool_uids()]
        self.tool_uids = self.extra_args[self.extra_args.index("--tool-uids") + 1]
        self.env = dict(env or {})
        self.keep_state = keep_state
        self.port = None
        self.proc = None
        self.log_path = os.path.join(self.state_dir, "gateway.log")

    def start(self, timeout=20.0):
        if not self.binary or not os.path.exists(self.binary):
            raise RuntimeError("GATEHOUSE binary not set or missing: %r" % self.binary)
        self.port = free_port()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.update(self.env)
        self.log = open(self.log_path, "ab")
        args = [self.binary, "serve", "--listen", "127.0.0.1:%d" % self.port,
                "--policies", self.policies, "--state-dir", self.state_dir] + self.extra_args
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gatehouse exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                r = self.request("GET", "/healthz", timeout=1)
                if r.status in (200, 503):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("gatehouse did not become ready:\n" + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, timeout=60, raw=False):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if raw else json.dumps(body).encode()
            hdrs.setdefault("content-type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        out = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        conn.close()
        return out

    def call(self, tool, arguments=None, **extra):
        body = {"arguments": arguments if arguments is not None else {}}
        body.update(extra)
        return self.request("POST", "/v1/tools/%s/calls" % tool, body)

    def metric(self, name):
        """The value of an unlabelled metric in /metrics (None if absent)."""
        for line in self.request("GET", "/metrics").body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def wait_inflight(self, n, timeout=20.0, caller=None):
        """Wait until n calls are running (gatehouse_calls_inflight). caller: the thread making
        the call, if any: its end also ends the wait (the call did not stay running)."""
        seen = []

        def check():
            seen.append(self.metric("gatehouse_calls_inflight"))
            return seen[-1] == n or (caller is not None and not caller.is_alive())
        if not wait_until(check, timeout) or seen[-1] != n:
            raise AssertionError("never %d calls in flight (last seen %s; log:\n%s)"
                                 % (n, seen[-1:], self.read_log()[-3000:]))

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode if self.proc else None
        if getattr(self, "log", None):
            self.log.close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        atexit.register(self.remove_tool_leftovers)

    def cleanup(self):
        if self.own_state and not self.keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def remove_tool_leftovers(self):
        """At exit, what a killed gateway's calls left under its uids (their TMPDIRs): a start
        with the same range removes it, and no gateway starts with this range after the test."""
        lo, count = (int(x) for x in self.tool_uids.split(":"))
        for top in ("/tmp", "/dev/shm"):
            for name in os.listdir(top):
                path = os.path.join(top, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if lo <= st.st_uid < lo + count:
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()
        return False


def run_functions(tests, arg=None):
    """Run test functions (each raises on failure; one that takes an argument is given arg),
    only those whose names contain a word of the command line if any; report each, and exit 1
    if any failed."""
    import traceback
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    only = sys.argv[1:]
    failed = 0
    for t in tests:
        if only and not any(word in t.__name__ for word in only):
            continue
        t0 = time.monotonic()
        try:
            t(arg) if t.__code__.co_argcount else t()
            print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - t0), flush=True)
        except Exception as e:  # report every test, then fail
            failed += 1
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
            traceback.print_exc()
    sys.exit(1 if failed else 0)


def settled_fds(pid, timeout=5.0):
    """The number of open descriptors of process pid once it stops changing. The gateway tears
    an HTTP connection down a moment after the client closes it (its socket and both ends of
    the pair to libmicrohttpd), so a count taken right after a request may include one."""
    path = "/proc/%d/fd" % pid
    seen, same = -1, 0
    deadline = time.monotonic() + timeout
    while same < 3 and time.monotonic() < deadline:
        n = len(os.listdir(path))
        same = same + 1 if n == seen else 0
        seen = n
        time.sleep(0.02)
    return seen


def wait_until(predicate, timeout):
    """Poll predicate until it is true or timeout seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def host_mounts():
    """The host's mount table: {mount id: mount point}."""
    with open("/proc/self/mountinfo") as f:
        return {int(line.split()[0]): line.split()[4] for line in f}


# Where a sandbox's mounts would land if one ever escaped its mount namespace: its root is a
# tmpfs mounted on /tmp before pivot_root, with its /usr, /proc, /dev, /tmp ... below that.
SANDBOX_TOP = {"usr", "bin", "lib", "lib64", "sbin", "etc", "proc", "dev", "tmp", "workspace"}


def sandbox_mounts_since(before):
    """Mount points new since host_mounts() gave `before` that are where a sandbox's (or a
    jail's) would be. The host's table is shared with everything else running on the machine
    (other test suites mount and unmount too, systemd mounts binfmt_misc on first use): only a
    new mount of that shape says a sandbox leaked one."""
    def shaped(mp):
        parts = mp.split("/")
        return mp == "/tmp" or (len(parts) > 2 and parts[1] == "tmp" and parts[2] in SANDBOX_TOP)
    return sorted(mp for mid, mp in host_mounts().items() if mid not in before and shaped(mp))


def write_policy(directory, name, text):
    """Write policies/<name>.yaml into a test's own policy directory."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def audit_records(state_dir):
    """Every audit record, in order, as dicts. The live segment ends in preallocated NUL
    bytes: its records stop at the first one."""
    d = os.path.join(state_dir, "audit")
    recs = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".jsonl"):
            with open(os.path.join(d, name), "rb") as f:
                data = f.read().split(b"\0", 1)[0]
            for line in data.splitlines():
                if line.strip():
                    recs.append(json.loads(line))
    return recs


def verify_audit(state_dir):
    """Run `gatehouse audit verify`; returns (exit code, output)."""
    p = subprocess.run([GATEHOUSE, "audit", "verify", os.path.join(state_dir, "audit")],
                       capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr
