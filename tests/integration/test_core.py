"""The core tool-call path, end to end, through the real `gatehouse serve`:
a successful call and its audit records, every error class of the HTTP API,
timeouts, output floods, processes that try to outlive their call, SIGHUP
reloads, concurrency limits, graceful SIGTERM and the fail-closed audit log."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

ECHO = os.path.join(harness.BUILD_POLICIES, "tools", "echo")

POLICIES = {
    "echo": """
name: echo
description: Print the given text back.
command: ["%s"]
isolation: process
arguments:
  type: object
  properties:
    text: {type: string, maxLength: 64}
    n: {type: integer, minimum: 1, maximum: 5}
  required: [text]
""" % ECHO,
    "sleeper": """
name: sleeper
description: Sleeps past its deadline.
command: ["/bin/sleep", "31.5"]
isolation: process
limits: {wall_timeout: 500ms}
""",
    "flood": """
name: flood
description: Floods stdout.
command: ["/usr/bin/yes", "flooding-the-gateway"]
isolation: process
limits: {output_bytes: 100000, wall_timeout: 20s}
""",
    "orphan": """
name: orphan
description: Starts a background child that would outlive the call.
command: ["/bin/sh", "-c", "sleep 32.5 & sleep 32.5 </dev/null >/dev/null 2>&1 & echo started"]
isolation: process
""",
    "env": """
name: env
description: Prints its environment.
command: ["/usr/bin/env"]
isolation: process
env: {GREETING: hello}
""",
    "whoami": """
name: whoami
description: Prints its uid, seccomp mode and signal state, then waits a little.
command: ["/bin/sh", "-c", "id -u; grep -E '^(Seccomp|NoNewPrivs|CapEff|SigBlk|SigIgn):' /proc/self/status; sleep 0.3"]
isolation: process
""",
    "spin": """
name: spin
description: Burns CPU past its cpu_time.
command: ["/bin/sh", "-c", "while :; do :; done"]
isolation: process
limits: {cpu_time: 1s, wall_timeout: 20s}
""",
    "unshare": """
name: unshare
description: Tries to create a user namespace.
command: ["/usr/bin/unshare", "--user", "/bin/true"]
isolation: process
""",
    "escape": """
name: escape
description: Tries to leave its process group (setsid forks first, as the tool leads its own).
command: ["/usr/bin/setsid", "--wait", "/bin/true"]
isolation: process
""",
    "escape2": """
name: escape2
description: The same, with setsid also in seccomp.deny (redundant, and must not stop the spawn).
command: ["/usr/bin/setsid", "--wait", "/bin/true"]
isolation: process
seccomp: {deny: [setsid]}
""",
    "tmpwrite": """
name: tmpwrite
description: Writes temporary files where tools usually do, and says where its TMPDIR is.
command: ["/bin/sh", "-c", "id -u; echo $TMPDIR; stat -c '%a %u' $TMPDIR; echo x > $TMPDIR/f; mkdir -p /tmp/gh-left-$GATEHOUSE_CALL_ID/d; echo x > /tmp/gh-left-$GATEHOUSE_CALL_ID/d/f; echo x > /dev/shm/gh-left-$GATEHOUSE_CALL_ID; echo y > $TMPDIR/m; mv $TMPDIR/m /tmp/gh-left-mv-$GATEHOUSE_CALL_ID; ln -s /etc/hostname /tmp/gh-left-ln-$GATEHOUSE_CALL_ID"]
isolation: process
""",
    "tmpmany": """
name: tmpmany
description: Leaves more entries at the top of /tmp than the gateway keeps names for.
command: ["/bin/sh", "-c", "for i in $(seq 40); do echo x > /tmp/gh-many-$GATEHOUSE_CALL_ID-$i; done"]
isolation: process
""",
    "slow": """
name: slow
description: Takes three seconds (long enough to be seen running).
command: ["/bin/sleep", "3"]
isolation: process
""",
    "binary": """
name: binary
description: Writes bytes that are not UTF-8.
command: ["/usr/bin/printf", "ok\\\\377\\\\376end"]
isolation: process
""",
}


def make_policy_dir(names=None):
    d = tempfile.mkdtemp(prefix="gh-pol-")
    for name, text in POLICIES.items():
        if names is None or name in names:
            harness.write_policy(d, name, text)
    return d


def pgrep(pattern):
    p = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split()]


def live_tool_processes(tool_uids, zombie_leaders=False):
    """Pids running under a uid of the range (BASE:COUNT) that are alive: not a zombie, or a
    zombie main thread whose other threads still run (pgrep cannot see those: no cmdline);
    only the latter with zombie_leaders."""
    lo, count = (int(x) for x in tool_uids.split(":"))
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/status" % pid) as f:
                st = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        uid = int(st["Uid"].split()[0])
        zombie = st["State"].split()[0] in "ZX"
        if lo <= uid < lo + count and (zombie and int(st["Threads"]) > 1 or not zombie and not zombie_leaders):
            pids.append(int(pid))
    return pids


def wait_gone(pattern, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pgrep(pattern):
            return True
        time.sleep(0.05)
    return False


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class CoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(ECHO):
            raise RuntimeError("echo tool not built at " + ECHO)
        cls.pdir = make_policy_dir()
        cls.gw = harness.Gateway(cls.pdir, env={"GW_CANARY": "canary-5f3a"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()
        shutil.rmtree(cls.pdir, ignore_errors=True)

    def error(self, r, status, code):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.json()["error"]["code"], code, r.body)
        self.assertTrue(r.json()["error"]["message"])

    def test_successful_call_is_audited(self):
        r = self.gw.call("echo", {"text": "hi"}, session="s1")
        self.assertEqual(r.status, 200, r.body)
        j = r.json()
        self.assertEqual(j["status"], "succeeded")
        self.assertEqual(j["stdout"], "hi\n")
        self.assertEqual(j["exit_code"], 0)
        self.assertEqual(j["isolation"], "process")
        self.assertEqual(j["tool"], "echo")
        for k in ("call_id", "stderr", "duration_ms", "audit_seq"):
            self.assertIn(k, j)
        recs = [x for x in harness.audit_records(self.gw.state_dir) if x.get("call_id") == j["call_id"]]
        self.assertEqual([x["event"] for x in recs], ["call.started", "call.finished"])
        self.assertEqual(recs[0]["agent"], "anonymous")
        self.assertEqual(recs[1]["seq"], j["audit_seq"])
        self.assertEqual(len(recs[0]["args_sha256"]), 64)
        rc, out = harness.verify_audit(self.gw.state_dir)
        self.assertEqual(rc, 0, out)
        g = self.gw.request("GET", "/v1/calls/" + j["call_id"])
        self.assertEqual(g.status, 200)
        self.assertEqual(g.json()["stdout"], "hi\n")

    def test_tools_list_publishes_schema(self):
        r = self.gw.request("GET", "/v1/tools")
        self.assertEqual(r.status, 200)
        tools = {t["name"]: t for t in r.json()["tools"]}
        self.assertIn("echo", tools)
        e = tools["echo"]
        self.assertEqual(e["input_schema"]["properties"]["text"]["maxLength"], 64)
        self.assertEqual(e["isolation"], "process")
        self.assertIn("blast_radius", e)
        self.assertFalse(e["approval_required"])

    def test_error_malformed_json(self):
        self.error(self.gw.request("POST", "/v1/tools/echo/calls", b'{"arguments":', raw=True), 400,
                   "malformed_json")

    def test_error_duplicate_keys(self):
        body = b'{"arguments":{"text":"a","text":"b"}}'
        self.error(self.gw.request("POST", "/v1/tools/echo/calls", body, raw=True), 400, "duplicate_key")

    def test_error_depth_over_64(self):
        body = ('{"arguments":{"text":"a","x":' + "[" * 70 + "]" * 70 + "}}").encode()
        self.error(self.gw.request("POST", "/v1/tools/echo/calls", body, raw=True), 400, "json_too_deep")

    def test_error_nul_in_name(self):
        body = b'{"arguments":{"te\\u0000xt":"a"}}'
        self.error(self.gw.request("POST", "/v1/tools/echo/calls", body, raw=True), 400, "bad_request")

    def test_error_unknown_tool(self):
        self.error(self.gw.call("nope", {}), 404, "tool_not_found")

    def test_error_unknown_route(self):
        self.error(self.gw.request("GET", "/v2/whatever"), 404, "not_found")

    def test_error_method_not_allowed(self):
        self.error(self.gw.request("GET", "/v1/tools/echo/calls"), 405, "method_not_allowed")
        self.error(self.gw.request("DELETE", "/v1/tools"), 405, "method_not_allowed")

    def test_error_body_too_large_answered_before_the_body_is_read(self):
        import socket
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10)
        # Declare 2 MiB, send only the headers and a few bytes: the answer must not wait.
        s.sendall(b"POST /v1/tools/echo/calls HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n{\"argu")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b" 413 ", head.split(b"\r\n")[0])
        self.assertEqual(json.loads(body)["error"]["code"], "body_too_large")

    def test_error_wrong_content_type(self):
        r = self.gw.request("POST", "/v1/tools/echo/calls", b'{"arguments":{"text":"a"}}',
                            headers={"content-type": "text/plain"}, raw=True)
        self.error(r, 415, "unsupported_media_type")

    def test_error_schema_violation_is_422_and_audited(self):
        r = self.gw.call("echo", {"text": "x" * 65})
        self.error(r, 422, "invalid_arguments")
        self.assertIn("$.text", r.json()["error"]["message"])
        self.error(self.gw.call("echo", {"text": "a", "n": 9}), 422, "invalid_arguments")
        self.error(self.gw.call("echo", {"nope": 1}), 422, "invalid_arguments")
        self.error(self.gw.call("echo", {"text": 5}), 422, "invalid_arguments")
        rejected = [x for x in harness.audit_records(self.gw.state_dir) if x["event"] == "call.rejected"]
        self.assertTrue(any(x.get("code") == "invalid_arguments" for x in rejected))

    def test_error_arguments_not_object(self):
        self.error(self.gw.request("POST", "/v1/tools/echo/calls", {"arguments": [1]}), 422,
                   "invalid_arguments")

    def test_timeout_kills_everything(self):
        r = self.gw.call("sleeper", {})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["status"], "timed_out")
        self.assertTrue(wait_gone("sleep 31.5"), "sleeper survived its timeout")

    def test_flood_truncated_and_memory_flat(self):
        before = rss_kb(self.gw.proc.pid)
        for _ in range(5):
            r = self.gw.call("flood", {})
            self.assertEqual(r.status, 200, r.body)
            j = r.json()
            self.assertEqual(j["status"], "output_truncated")
            self.assertTrue(j["output_truncated"])
            self.assertLessEqual(len(j["stdout"]) + len(j["stderr"]), 100000)
            self.assertGreaterEqual(len(j["stdout"]), 99000)
        after = rss_kb(self.gw.proc.pid)
        # Five floods that would each produce gigabytes: memory stays within a few MiB of the cap.
        self.assertLess(after - before, 64 * 1024, (before, after))

    def test_children_do_not_outlive_the_call(self):
        r = self.gw.call("orphan", {})
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(wait_gone("sleep 32.5"), "a child outlived its call")

    def test_environment_is_only_the_policy(self):
        j = self.gw.call("env", {}).json()
        env = dict(line.split("=", 1) for line in j["stdout"].splitlines() if "=" in line)
        self.assertEqual(env.get("GREETING"), "hello")
        self.assertEqual(env.get("GATEHOUSE_TOOL"), "env")
        self.assertEqual(env.get("GATEHOUSE_CALL_ID"), j["call_id"])
        self.assertEqual(set(env), {"GREETING", "GATEHOUSE_TOOL", "GATEHOUSE_CALL_ID", "TMPDIR"})
        self.assertNotIn("canary-5f3a", j["stdout"])

    def test_runs_unprivileged_with_seccomp_and_default_signals(self):
        j = self.gw.call("whoami", {}).json()
        lines = j["stdout"].split("\n")
        self.assertGreaterEqual(int(lines[0]), 1900000000)  # --tool-uids default range
        self.assertIn("Seccomp:\t2", j["stdout"])
        self.assertIn("NoNewPrivs:\t1", j["stdout"])
        self.assertIn("CapEff:\t0000000000000000", j["stdout"])
        self.assertIn("SigBlk:\t0000000000000000", j["stdout"])
        self.assertIn("SigIgn:\t0000000000000000", j["stdout"])

    def test_temporary_files_are_private_and_removed_after_the_call(self):
        for _ in range(3):  # the uids are recycled: no call finds what an earlier one left
            j = self.gw.call("tmpwrite", {}).json()
            self.assertEqual(j["status"], "succeeded", j)
            uid, tmpdir, mode = j["stdout"].splitlines()[:3]
            self.assertTrue(tmpdir.startswith("/tmp/gatehouse-call-"), tmpdir)
            self.assertEqual(mode, "700 " + uid)
            left = [tmpdir] + ["%s/gh-left-%s" % (d, j["call_id"]) for d in ("/tmp", "/dev/shm")]
            left += ["/tmp/gh-left-%s-%s" % (how, j["call_id"]) for how in ("mv", "ln")]
            for path in left:
                self.assertFalse(os.path.lexists(path), path + " outlived its call")

    def test_many_temporary_files_are_removed_too(self):
        """More entries than the gateway remembers names for: the call's end scans /tmp."""
        for _ in range(2):
            j = self.gw.call("tmpmany", {}).json()
            self.assertEqual(j["status"], "succeeded", j)
            left = [n for n in os.listdir("/tmp") if n.startswith("gh-many-" + j["call_id"])]
            self.assertEqual(left, [])

    def test_every_command_has_help_and_the_error_page_is_the_table(self):
        top = subprocess.run([harness.GATEHOUSE, "--help"], capture_output=True, text=True)
        self.assertEqual(top.returncode, 0, top.stderr)
        commands = [line.split()[0] for line in top.stdout.splitlines()
                    if line.startswith("  ") and not line.split()[0].startswith("-")]
        self.assertIn("serve", commands)
        for cmd in commands:
            for argv in (["help", cmd], [cmd, "--help"]):
                p = subprocess.run([harness.GATEHOUSE] + argv, capture_output=True, text=True)
                self.assertEqual(p.returncode, 0, (argv, p.stdout, p.stderr))
                self.assertIn("usage", p.stdout.lower(), argv)
        # Subcommands too, with --help anywhere: never taken for an operand (`agents add --help`
        # once made a token for an agent named "--help", `policy check --help` read a directory).
        for argv in (["policy", "check", "--help"], ["policy", "lint", "--help"],
                     ["policy", "diff", "-h"], ["policy", "explain", "--help"],
                     ["policy", "schema", "--help"], ["audit", "verify", "--help"],
                     ["approvals", "approve", "c_x", "--help"], ["agents", "add", "--help"],
                     ["db", "prune-anchors", "--help"], ["mcp", "--help"]):
            p = subprocess.run([harness.GATEHOUSE] + argv, capture_output=True, text=True)
            self.assertEqual((p.returncode, p.stderr), (0, ""), argv)
            self.assertRegex(p.stdout, r"^usage: gatehouse %s" % argv[0], argv)
            self.assertNotIn("token:", p.stdout, argv)
        # ... but an option's value is data: a deny whose reason is "-h" is a deny (to a gateway
        # that is not there: exit 2), not usage and exit 0, which a script takes for done.
        for reason in ("-h", "--help"):
            p = subprocess.run([harness.GATEHOUSE, "approvals", "deny", "c_x", "--reason", reason,
                                "--url", "http://127.0.0.1:%d" % harness.free_port()],
                               capture_output=True, text=True,
                               env=dict(os.environ, GATEHOUSE_APPROVER_TOKEN="t" * 20))
            self.assertNotEqual(p.returncode, 0, (reason, p.stdout))
            self.assertNotIn("usage", p.stdout + p.stderr, reason)
        page = subprocess.run([harness.GATEHOUSE, "help", "errors"], capture_output=True, text=True)
        self.assertEqual(page.returncode, 0)
        with open(os.path.join(harness.SOURCE_DIR, "common/include/gate.h")) as f:
            codes = re.findall(r'X\(\w+, "(\w+)", (\d+),', f.read())
        for code, status in codes[1:]:  # all but "ok"
            self.assertRegex(page.stdout, r"(?m)^%s +%s " % (status, code))
        v = subprocess.run([harness.GATEHOUSE, "--version"], capture_output=True, text=True)
        self.assertRegex(v.stdout, r"^gatehouse \d+\.\d+\.\d+")

    def test_concurrent_calls_get_distinct_uids(self):
        out = []
        threads = [threading.Thread(target=lambda: out.append(self.gw.call("whoami", {}).json()))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        uids = {j["stdout"].split("\n")[0] for j in out}
        self.assertEqual(len(uids), 4, uids)

    def test_cpu_time_limit_is_resource_limit(self):
        j = self.gw.call("spin", {}).json()
        self.assertEqual(j["status"], "resource_limit", j)
        self.assertIn("cpu_time", j["detail"])

    def test_error_invalid_utf8_path(self):
        self.error(self.gw.request("POST", "/v1/tools/%ff/calls", {"arguments": {}}), 400, "bad_request")

    def test_error_chunked_body_too_large(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=30)
        conn.putrequest("POST", "/v1/tools/echo/calls")
        conn.putheader("content-type", "application/json")
        conn.putheader("transfer-encoding", "chunked")
        conn.endheaders()
        chunk = b"a" * 65536
        for _ in range(20):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        body = r.read()
        conn.close()
        self.assertEqual(r.status, 413, body)
        self.assertEqual(json.loads(body)["error"]["code"], "body_too_large")

    def test_seccomp_refuses_namespaces(self):
        j = self.gw.call("unshare", {}).json()
        self.assertEqual(j["status"], "failed")
        self.assertIn("Operation not permitted", j["stderr"])

    def test_seccomp_refuses_setsid(self):
        # The gateway's own spawn uses setsid under the same filter, with a secret in the
        # argument registers; a tool without it is refused.
        for tool in ("escape", "escape2"):
            j = self.gw.call(tool, {}).json()
            self.assertEqual(j["status"], "failed", j)
            self.assertIn("setsid failed: Operation not permitted", j["stderr"])

    def test_invalid_utf8_is_escaped_not_dropped(self):
        j = self.gw.call("binary", {}).json()
        self.assertEqual(j["stdout"], "ok\\xff\\xfeend")
        import base64
        self.assertEqual(base64.b64decode(j["stdout_base64"]), b"ok\xff\xfeend")

    def test_healthz_and_metrics(self):
        self.gw.call("echo", {"text": "m"})
        h = self.gw.request("GET", "/healthz")
        self.assertEqual(h.status, 200)
        self.assertEqual(h.json()["status"], "ok")
        m = self.gw.request("GET", "/metrics").body.decode()
        self.assertRegex(m, r'gatehouse_calls_total\{tool="echo",status="succeeded",'
                            r'isolation="process",agent="[^"]*"\} [1-9]')
        self.assertIn("gatehouse_call_duration_seconds_bucket", m)
        self.assertIn("gatehouse_policy_reload_failures_total", m)
        self.assertIn("gatehouse_audit_write_failures_total 0", m)

    def test_call_not_found(self):
        self.error(self.gw.request("GET", "/v1/calls/c_doesnotexist"), 404, "call_not_found")


class StartupTest(unittest.TestCase):
    def start_fails(self, extra, policies=None, text=None):
        d = policies or make_policy_dir(["echo"])
        gw = harness.Gateway(d, extra_args=extra)
        try:
            with self.assertRaises(RuntimeError) as ctx:
                gw.start()
        finally:
            gw.stop()
            gw.cleanup()
            shutil.rmtree(d, ignore_errors=True)
        if text:
            self.assertIn(text, str(ctx.exception))

    def test_run_as_root_or_minus_one_is_refused(self):
        self.start_fails(["--run-as", "-1"], text="--run-as")
        self.start_fails(["--run-as", "root"], text="--run-as")
        self.start_fails(["--tool-uids", "0:10"], text="--tool-uids")
        # The sandboxes' own uid inside the call range would share a call's network policy.
        self.start_fails(["--run-as", "nobody", "--tool-uids", "65500:64"],
                         text="lies inside --tool-uids")

    def test_second_gateway_on_same_port_does_not_start(self):
        d = make_policy_dir(["echo"])
        state = tempfile.mkdtemp(prefix="gh-state-")
        with harness.Gateway(d) as gw:
            p = subprocess.run([harness.GATEHOUSE, "serve", "--listen", "127.0.0.1:%d" % gw.port,
                                "--policies", d, "--state-dir", state],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("cannot listen", p.stderr)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)

    def test_spawn_syscalls_cannot_be_denied_in_process_tier(self):
        d = make_policy_dir([])
        harness.write_policy(d, "nochdir", "name: nochdir\ndescription: x\n"
                             "command: [\"/bin/true\"]\nisolation: process\n"
                             "seccomp: {deny: [chdir]}\n")
        self.start_fails([], policies=d, text="chdir")

    def test_setsid_cannot_be_allowed_in_process_tier(self):
        d = tempfile.mkdtemp(prefix="gh-pol-")
        harness.write_policy(d, "bad", POLICIES["slow"].replace("name: slow", "name: bad") +
                             "seccomp: {allow: [setsid]}\n")
        self.start_fails([], policies=d, text="setsid")


class ReloadTest(unittest.TestCase):
    def test_sighup_with_broken_file_keeps_old_set(self):
        d = make_policy_dir(["echo"])
        with harness.Gateway(d) as gw:
            harness.write_policy(d, "broken", "name: broken\ndescription: x\nisolaton: process\n")
            gw.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            m = ""
            while time.monotonic() < deadline:
                m = gw.request("GET", "/metrics").body.decode()
                if "gatehouse_policy_reload_failures_total 1" in m:
                    break
                time.sleep(0.05)
            self.assertIn("gatehouse_policy_reload_failures_total 1", m)
            self.assertIn("isolaton", gw.read_log())
            self.assertEqual(gw.call("echo", {"text": "still"}).json()["stdout"], "still\n")
            # Fix it: the next SIGHUP swaps in the new set.
            harness.write_policy(d, "broken", POLICIES["slow"].replace("name: slow", "name: broken"))
            gw.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            names = []
            while time.monotonic() < deadline:
                names = [t["name"] for t in gw.request("GET", "/v1/tools").json()["tools"]]
                if "broken" in names:
                    break
                time.sleep(0.05)
            self.assertIn("broken", names)
            events = [x["event"] for x in harness.audit_records(gw.state_dir)]
            self.assertIn("policy.rejected", events)
            self.assertEqual(events.count("policy.loaded"), 2)
        shutil.rmtree(d, ignore_errors=True)


class LimitsTest(unittest.TestCase):
    def test_too_many_calls_gets_429(self):
        d = make_policy_dir(["slow", "echo"])
        with harness.Gateway(d, extra_args=["--max-concurrent", "1"]) as gw:
            results = []
            t = threading.Thread(target=lambda: results.append(gw.call("slow", {})))
            t.start()
            gw.wait_inflight(1, caller=t)
            r = gw.call("echo", {"text": "x"})
            t.join()
            self.assertEqual(r.status, 429, r.body)
            self.assertEqual(r.json()["error"]["code"], "too_many_calls")
            self.assertEqual(r.headers.get("retry-after"), "1")
            self.assertEqual(results[0].status, 200)
        shutil.rmtree(d, ignore_errors=True)

    def test_sigterm_after_grace_kills_what_remains(self):
        d = tempfile.mkdtemp(prefix="gh-pol-")
        harness.write_policy(d, "long", """
name: long
description: Outlasts the grace period, with a grandchild.
command: ["/bin/sh", "-c", "sleep 77.7 & sleep 77.7"]
isolation: process
limits: {wall_timeout: 60s}
""")
        gw = harness.Gateway(d, extra_args=["--grace", "1"]).start()
        def call_and_ignore():
            try:
                gw.call("long", {})  # answered "killed", or the connection drops
            except OSError:
                pass
        t = threading.Thread(target=call_and_ignore)
        t.start()
        self.assertTrue(harness.wait_until(lambda: len(pgrep("sleep 77.7")) >= 2, 20))
        self.assertEqual(gw.stop(signal.SIGTERM), 0)
        t.join()
        self.assertTrue(wait_gone("sleep 77.7"), "a tool outlived the gateway's shutdown")
        recs = harness.audit_records(gw.state_dir)
        self.assertEqual(recs[-1]["event"], "gateway.stopped")
        self.assertEqual(recs[-1]["calls_killed"], 1)
        gw.cleanup()
        shutil.rmtree(d, ignore_errors=True)

    def test_sigterm_lets_running_calls_finish(self):
        d = make_policy_dir(["slow"])
        gw = harness.Gateway(d).start()
        results = []
        t = threading.Thread(target=lambda: results.append(gw.call("slow", {})))
        t.start()
        try:
            gw.wait_inflight(1, caller=t)
        except AssertionError as e:
            t.join()
            raise AssertionError("%s\ncall: %s" % (e, [(r.status, r.body[:300]) for r in results]))
        rc = gw.stop(signal.SIGTERM)
        t.join()
        self.assertEqual(rc, 0)
        self.assertEqual(results[0].status, 200)
        self.assertEqual(results[0].json()["status"], "succeeded")
        recs = harness.audit_records(gw.state_dir)
        self.assertEqual(recs[-1]["event"], "gateway.stopped")
        self.assertEqual(harness.verify_audit(gw.state_dir)[0], 0)
        gw.cleanup()
        shutil.rmtree(d, ignore_errors=True)


class AuditFailClosedTest(unittest.TestCase):
    def test_full_disk_gives_503_and_healthz_says_why(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tiny tmpfs")
        state = tempfile.mkdtemp(prefix="gh-tiny-")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", state]).returncode:
            self.skipTest("cannot mount tmpfs here")
        d = make_policy_dir(["echo"])
        gw = None
        try:
            gw = harness.Gateway(d, state_dir=state)
            gw.log_path = os.path.join(d, "gateway.log")
            gw.start()
            # Fill the file system, leaving the audit log no room.
            fd = os.open(os.path.join(state, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError:
                pass
            os.close(fd)
            # The live segment has zeros written ahead of its records (at most 1 MiB, about
            # 2,000 records): calls go on until that reserve is used, then fail closed.
            statuses = set()
            for _ in range(2500):
                r = gw.call("echo", {"text": "x" * 60})
                statuses.add(r.status)
                if r.status == 503:
                    self.assertEqual(r.json()["error"]["code"], "audit_unavailable")
                    break
            self.assertIn(503, statuses)
            # Fail closed: even after space comes back, calls stay refused.
            os.unlink(os.path.join(state, "filler"))
            r = gw.call("echo", {"text": "x"})
            self.assertEqual(r.status, 503)
            h = gw.request("GET", "/healthz")
            self.assertEqual(h.status, 503)
            self.assertIn("audit", h.json()["reason"])
        finally:
            if gw:
                gw.stop()  # also when an assertion failed: no gateway outlives its test
            subprocess.run(["umount", "-l", state])
            shutil.rmtree(state, ignore_errors=True)
            shutil.rmtree(d, ignore_errors=True)


class CrashTest(unittest.TestCase):
    def test_tools_surviving_a_killed_gateway_are_killed_at_the_next_start(self):
        """Only a tool's direct child dies with the gateway (PDEATHSIG); its children would keep
        a tool uid (which the next calls get) and no network filter. The next start kills them."""
        d = tempfile.mkdtemp(prefix="gh-pol-")
        harness.write_policy(d, "survivor", """
name: survivor
description: Leaves children running in its group.
command: ["/bin/sh", "-c", "sleep 43.21 & sleep 43.22 & /usr/bin/python3 -c \\"import threading, time, ctypes\\nthreading.Thread(target=time.sleep, args=(43.23,)).start()\\nctypes.CDLL(None).syscall(60, 0)  # zombie-leader-43\\" & wait"]
isolation: process
limits: {wall_timeout: 60s}
""")
        gw = harness.Gateway(d).start()
        try:
            threading.Thread(target=lambda: self._call_quietly(gw), daemon=True).start()
            self.assertTrue(harness.wait_until(lambda: len(pgrep("sleep 43.2")) >= 2, 20))
            # A process whose main thread exited (a zombie leader) with a thread still running
            # is alive: it must be killed too, not skipped as a zombie.
            self.assertTrue(harness.wait_until(lambda: len(pgrep("zombie-leader-43")) >= 1, 20))
            gw.kill9()
            self.assertTrue(harness.wait_until(
                lambda: any(live_tool_processes(gw.tool_uids, zombie_leaders=True)), 10),
                "expected a zombie leader with a live thread")
            self.assertTrue(harness.wait_until(lambda: len(pgrep("sleep 43.2")) >= 1, 5),
                            "expected the grandchildren to outlive the killed gateway")
            # The same --tool-uids range: the range's owner kills what is left under it.
            gw2 = harness.Gateway(d, state_dir=gw.state_dir, extra_args=gw.extra_args).start()
            try:
                self.assertTrue(wait_gone("sleep 43.2", 10), "survivors still running")
                self.assertTrue(harness.wait_until(lambda: not live_tool_processes(gw.tool_uids), 10),
                                "tool processes still running (a zombie leader's threads?)")
            finally:
                gw2.stop()
        finally:
            for pid in pgrep("sleep 43.2") + live_tool_processes(gw.tool_uids):
                os.kill(pid, signal.SIGKILL)
            gw.cleanup()
            shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def _call_quietly(gw):
        try:
            gw.call("survivor", {})
        except OSError:
            pass  # the gateway was killed under it

    def test_kill9_during_calls_loses_no_acknowledged_record(self):
        d = make_policy_dir(["echo"])
        state = tempfile.mkdtemp(prefix="gh-crash-")
        gw = harness.Gateway(d, state_dir=state).start()
        acked = []
        lock = threading.Lock()
        stop = threading.Event()

        def client():
            while not stop.is_set():
                try:
                    r = gw.call("echo", {"text": "crash"})
                except OSError:
                    return
                if r.status == 200:
                    with lock:
                        acked.append(r.json()["call_id"])

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        # Kill while calls are being acknowledged: after some have been, not at a set time.
        harness.wait_until(lambda: len(acked) >= 30, 30)
        gw.kill9()
        stop.set()
        for t in threads:
            t.join()
        self.assertGreater(len(acked), 10)
        # Restart on the same state: the torn tail (if any) is repaired, the chain continues.
        gw2 = harness.Gateway(d, state_dir=state).start()
        self.assertEqual(gw2.call("echo", {"text": "after"}).status, 200)
        gw2.stop()
        rc, out = harness.verify_audit(state)
        self.assertEqual(rc, 0, out)
        recs = harness.audit_records(state)
        finished = {x["call_id"] for x in recs if x["event"] == "call.finished"}
        started = {x["call_id"] for x in recs if x["event"] == "call.started"}
        missing = [c for c in acked if c not in finished or c not in started]
        self.assertEqual(missing, [], "acknowledged calls without their audit records")
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
