"""Policies through the real gateway.

- A policy directory holding entries that are not plain policy files (issue 10.5): a FIFO
  named *.yaml must fail start-up, `policy check` and a SIGHUP reload promptly (it used to hang
  each of them, and a wedged reload left later SIGHUPs and SIGTERM unanswered), and a symlink
  leading out of the directory must be refused without anything of its target reaching the log
  or the audit record.
- Errors found when a tier prepares a policy carry FILE:LINE:COL (issue 10.6).
- Argument schemas over HTTP (issue 11, issue 10.4): GET /v1/tools publishes the enforced
  (normalised) schema, a trailing newline no longer slips through `$`, 5.0 is an integer."""
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

ECHO = os.path.join(harness.BUILD_POLICIES, "tools", "echo")
SECRET = "root:$6$not-a-policy-secret-7f3a"


def echo_policy(name):
    return ("name: %s\ndescription: Print the given text back.\ncommand: [\"%s\"]\n"
            "isolation: process\narguments:\n  type: object\n  properties:\n"
            "    text: {type: string}\n" % (name, ECHO))


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def reload_failures(gw):
    for line in gw.request("GET", "/metrics").body.decode().splitlines():
        if line.startswith("gatehouse_policy_reload_failures_total "):
            return int(float(line.split()[1]))
    return 0


def tool_names(gw):
    return sorted(t["name"] for t in gw.request("GET", "/v1/tools").json()["tools"])


class PolicyDirectoryTest(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(ECHO):
            harness.skip("the example tools are not built (%s)" % ECHO)
        self.dir = tempfile.mkdtemp(prefix="gh-pol-")
        harness.write_policy(self.dir, "echo", echo_policy("echo"))
        self.outside = tempfile.mkdtemp(prefix="gh-outside-")
        self.secret = os.path.join(self.outside, "shadow")
        with open(self.secret, "w") as f:
            f.write(SECRET + ":19000:0:99999:7:::\n")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.outside, ignore_errors=True)

    def assert_stops_on_sigterm(self, gw):
        gw.send_signal(signal.SIGTERM)
        try:
            rc = gw.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("SIGTERM did not stop the gateway:\n" + gw.read_log())
        self.assertEqual(rc, 0, gw.read_log())

    def test_policy_check_refuses_a_fifo_without_hanging(self):
        os.mkfifo(os.path.join(self.dir, "zz.yaml"))
        try:
            p = subprocess.run([harness.GATEHOUSE, "policy", "check", self.dir],
                               capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            self.fail("gatehouse policy check hung on a FIFO")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("zz.yaml:1:1: a FIFO, not a regular file", p.stderr)

    def test_fifo_at_start_up_fails_the_start_promptly(self):
        os.mkfifo(os.path.join(self.dir, "zz.yaml"))
        gw = harness.Gateway(self.dir)
        try:
            with self.assertRaises(RuntimeError):
                gw.start(timeout=30)
            self.assertIsNotNone(gw.proc.poll(), "the gateway hung at start-up:\n" + gw.read_log())
            self.assertNotEqual(gw.proc.returncode, 0)
            self.assertIn("zz.yaml:1:1: a FIFO, not a regular file", gw.read_log())
            rejected = [r for r in harness.audit_records(gw.state_dir)
                        if r["event"] == "policy.rejected"]
            self.assertEqual(len(rejected), 1)
        finally:
            gw.stop()
            gw.cleanup()

    def test_fifo_at_sighup_is_rejected_and_the_gateway_stays_responsive(self):
        with harness.Gateway(self.dir) as gw:
            fifo = os.path.join(self.dir, "zz.yaml")
            os.mkfifo(fifo)
            gw.send_signal(signal.SIGHUP)
            wait_for(lambda: reload_failures(gw) == 1, "the reload with a FIFO to be rejected")
            self.assertIn("zz.yaml:1:1: a FIFO, not a regular file", gw.read_log())
            self.assertEqual(gw.call("echo", {"text": "still"}).json()["stdout"], "still\n")
            # The signal thread is free: the next SIGHUP loads the fixed directory ...
            os.unlink(fifo)
            harness.write_policy(self.dir, "echo2", echo_policy("echo2"))
            gw.send_signal(signal.SIGHUP)
            wait_for(lambda: tool_names(gw) == ["echo", "echo2"], "the fixed set to load")
            # ... and SIGTERM still stops it.
            self.assert_stops_on_sigterm(gw)

    def test_symlink_out_of_the_directory_is_refused_unread(self):
        with harness.Gateway(self.dir) as gw:
            os.symlink(self.secret, os.path.join(self.dir, "shadow.yaml"))
            gw.send_signal(signal.SIGHUP)
            wait_for(lambda: reload_failures(gw) == 1, "the reload with the symlink to be rejected")
            log = gw.read_log()
            self.assertIn("shadow.yaml:1:1: symbolic link leading outside its directory", log)
            self.assertNotIn("not-a-policy-secret", log)
            rejected = [r for r in harness.audit_records(gw.state_dir)
                        if r["event"] == "policy.rejected"]
            self.assertEqual(len(rejected), 1)
            self.assertNotIn("not-a-policy-secret", str(rejected[0]))
            self.assertEqual(tool_names(gw), ["echo"])


class PrepareErrorLocationTest(unittest.TestCase):
    """Errors found when a tier prepares a policy (issue 10.6) carry FILE:LINE:COL like every
    other policy error: the seccomp entry the process tier refuses, not just the file."""

    def check(self, seccomp_lines, want):
        d = tempfile.mkdtemp(prefix="gh-pol-")
        try:
            path = harness.write_policy(d, "t", "name: t\ndescription: d\nisolation: process\n"
                                        "command: [/bin/true]\nseccomp:\n" + seccomp_lines)
            p = subprocess.run([harness.GATEHOUSE, "policy", "check", d],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn(path + ":" + want, p.stderr)
            gw = harness.Gateway(d)
            try:
                with self.assertRaises(RuntimeError):
                    gw.start()
                self.assertIn(path + ":" + want, gw.read_log())
            finally:
                gw.stop()
                gw.cleanup()
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_allowed_setpgid_is_located(self):
        self.check("  allow: [read,\n          setpgid]\n",
                   "7:11: seccomp.allow: 'setpgid' cannot be allowed in the process tier")

    def test_denied_chdir_is_located(self):
        self.check("  deny:\n    - read\n    - chdir\n",
                   "8:7: seccomp.deny: 'chdir' cannot be denied in the process tier")


LEDGER_LIKE = """
name: acct
description: Account names as the example ledger policy writes them.
command: ["%s"]
isolation: process
arguments:
  type: object
  properties:
    account: {type: string, pattern: "^[A-Za-z0-9_-]{1,64}$"}
    amount: {type: integer, minimum: 1, maximum: 1000000}
    when: {type: string, format: date-time}
    memo: {anyOf: [{type: string, maxLength: 8}, {type: "null"}]}
  required: [account, amount]
"""


class SchemaOverHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(ECHO):
            harness.skip("the example tools are not built (%s)" % ECHO)
        cls.dir = tempfile.mkdtemp(prefix="gh-pol-")
        harness.write_policy(cls.dir, "acct", LEDGER_LIKE % ECHO)
        cls.gw = harness.Gateway(cls.dir).start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_published_schema_states_the_strict_default(self):
        tools = {t["name"]: t for t in self.gw.request("GET", "/v1/tools").json()["tools"]}
        schema = tools["acct"]["input_schema"]
        self.assertIs(schema["additionalProperties"], False)
        self.assertEqual(schema["properties"]["when"], {"type": "string", "format": "date-time"})
        self.assertEqual(schema["required"], ["account", "amount"])

    def rejected(self, arguments):
        r = self.gw.call("acct", arguments)
        self.assertEqual(r.status, 422, r.body)
        self.assertEqual(r.json()["error"]["code"], "invalid_arguments")
        return r.json()["error"]["message"]

    def test_trailing_newline_does_not_pass_dollar(self):
        self.assertEqual(self.rejected({"account": "acme\n", "amount": 5}),
                         "$.account: does not match pattern '^[A-Za-z0-9_-]{1,64}$'")
        r = self.gw.call("acct", {"account": "acme", "amount": 5})
        self.assertEqual(r.json()["status"], "succeeded", r.body)
        rejected = [x for x in harness.audit_records(self.gw.state_dir) if x["event"] == "call.rejected"]
        self.assertIn("$.account: does not match pattern", rejected[-1]["message"])

    def test_integral_number_is_an_integer(self):
        r = self.gw.request("POST", "/v1/tools/acct/calls",
                            b'{"arguments": {"account": "acme", "amount": 5.0}}', raw=True)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["status"], "succeeded", r.body)
        self.assertIn("$.amount: expected integer, got number",
                      self.rejected({"account": "acme", "amount": 5.5}))

    def test_format_and_any_of(self):
        self.assertEqual(self.rejected({"account": "a", "amount": 1, "when": "2026-12-02 10:00:00Z"}),
                         "$.when: not a valid date-time (format)")
        self.assertIn("$.memo: matches none of the 2 anyOf schemas",
                      self.rejected({"account": "a", "amount": 1, "memo": "far too long"}))
        r = self.gw.call("acct", {"account": "a", "amount": 1, "when": "2026-12-02T10:00:00Z",
                                  "memo": None})
        self.assertEqual(r.json()["status"], "succeeded", r.body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
