"""Agents (issue 12): who is calling. Identities and tokens, grants (tools and extra argument
schemas), quotas, per-agent visibility of calls, approvers apart from agents, secrets and state
that no tool can read, and the start-up refusals. Real gateway, real HTTP, real sandboxes.
"""
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

T_ALPHA = "alpha-token-" + os.urandom(12).hex()
T_BETA = "beta-token-" + os.urandom(12).hex()
T_GAMMA = "gamma-token-" + os.urandom(12).hex()
T_CAROL = "carol-token-" + os.urandom(12).hex()
T_DAVE = "dave-token-" + os.urandom(12).hex()

POLICIES = {
    "echo": """name: echo
description: echo
command: ["/bin/cat"]
isolation: process
arguments: {type: object, properties: {text: {type: string, maxLength: 64}}}
""",
    "slow": """name: slow
description: sleeps
command: ["/bin/sleep", "3"]
isolation: process
""",
    "ledger": """name: ledger
description: held for approval
command: ["/bin/cat"]
isolation: process
blast_radius: high
reversible: false
approval: {required: true, timeout: 1h}
arguments:
  type: object
  properties:
    account: {type: string, maxLength: 32}
    amount: {type: integer, minimum: 1, maximum: 1000000}
  required: [account, amount]
""",
    "secret_tool": """name: secret_tool
description: granted to nobody
command: ["/bin/true"]
isolation: process
""",
}

CONFIG = """agents:
  alpha:
    token_env: T_ALPHA
    tools: [echo, "led*"]
    arguments:
      "ledger": {type: object, properties: {amount: {type: integer, maximum: 100}, account: {not: {const: vault}}}, additionalProperties: true}
    max_pending: 2
  beta:
    token_sha256: %s
    tools: [echo, slow]
    max_concurrent: 1
  gamma:
    token_env: T_GAMMA
    tools: ["*"]
    rate: 3
approval:
  approvers:
    carol: {token_env: T_CAROL}
    dave: {token_env: T_DAVE, tools: [echo]}
""" % hashlib.sha256(T_BETA.encode()).hexdigest()

ENV = {"T_ALPHA": T_ALPHA, "T_GAMMA": T_GAMMA, "T_CAROL": T_CAROL, "T_DAVE": T_DAVE}


def bearer(token):
    return {"Authorization": "Bearer " + token}


class AgentsTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="gh-agents-")
        self.pdir = os.path.join(self.root, "policies")
        for name, text in POLICIES.items():
            harness.write_policy(self.pdir, name, text)
        self.config = os.path.join(self.root, "gatehouse.yaml")
        with open(self.config, "w") as f:
            f.write(CONFIG)
        self.gw = harness.Gateway(self.pdir, extra_args=["--config", self.config], env=ENV).start()

    def tearDown(self):
        self.gw.stop()
        self.gw.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def call(self, token, tool, args=None, **extra):
        body = {"arguments": args if args is not None else {}}
        body.update(extra)
        headers = bearer(token) if token else {}
        return self.gw.request("POST", "/v1/tools/%s/calls" % tool, body, headers=headers)

    def get(self, path, token=None):
        return self.gw.request("GET", path, headers=bearer(token) if token else {})

    def rejected(self):
        return [r for r in harness.audit_records(self.gw.state_dir) if r["event"] == "call.rejected"]

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.json()["error"]["code"], code, r.body)

    def test_each_agent_sees_only_its_tools(self):
        alpha = {t["name"] for t in self.get("/v1/tools", T_ALPHA).json()["tools"]}
        beta = {t["name"] for t in self.get("/v1/tools", T_BETA).json()["tools"]}
        gamma = {t["name"] for t in self.get("/v1/tools", T_GAMMA).json()["tools"]}
        self.assertEqual(alpha, {"echo", "ledger"})
        self.assertEqual(beta, {"echo", "slow"})
        self.assertEqual(gamma, set(POLICIES))

    def test_every_v1_endpoint_and_metrics_need_a_valid_token(self):
        for path in ("/v1/tools", "/v1/calls/c_0123", "/v1/approvals", "/metrics"):
            for headers in ({}, bearer("not-a-token-0123456789"), {"Authorization": "Basic eDp5"}):
                r = self.gw.request("GET", path, headers=headers)
                self.assert_error(r, 401, "unauthorized")
        self.assert_error(self.call(None, "echo", {"text": "x"}), 401, "unauthorized")
        self.assert_error(self.call("wrong-token-0123456789", "echo", {"text": "x"}), 401, "unauthorized")
        self.assertEqual(self.get("/healthz").status, 200)
        # The refusals are audited without the token, and counted.
        recs = [r for r in self.rejected() if r["code"] == "unauthorized"]
        self.assertEqual(len(recs), 2)
        log = self.gw.read_log()
        audit = json.dumps(harness.audit_records(self.gw.state_dir))
        for secret in ("wrong-token-0123456789", "not-a-token-0123456789"):
            self.assertNotIn(secret, log)
            self.assertNotIn(secret, audit)
        m = self.get("/metrics", T_ALPHA).body.decode()
        self.assertRegex(m, r'gatehouse_auth_failures_total\{reason="missing"\} [1-9]')
        self.assertRegex(m, r'gatehouse_auth_failures_total\{reason="invalid"\} [1-9]')

    def test_ungranted_tool_answers_as_unknown_and_is_audited(self):
        for tool in ("secret_tool", "no_such_tool"):
            self.assert_error(self.call(T_ALPHA, tool), 404, "tool_not_found")
        codes = [(r["tool"], r["code"], r["agent"]) for r in self.rejected()]
        self.assertIn(("secret_tool", "tool_not_granted", "alpha"), codes)
        self.assertIn(("no_such_tool", "tool_not_found", "alpha"), codes)

    def test_agent_field_must_be_the_caller(self):
        r = self.call(T_ALPHA, "echo", {"text": "x"}, agent="beta")
        self.assert_error(r, 403, "agent_mismatch")
        r = self.call(T_ALPHA, "echo", {"text": "x"}, agent="alpha", session="s-1")
        self.assertEqual(r.status, 200, r.body)
        started = [x for x in harness.audit_records(self.gw.state_dir)
                   if x["event"] == "call.started" and x["call_id"] == r.json()["call_id"]]
        self.assertEqual((started[0]["agent"], started[0]["session"]), ("alpha", "s-1"))

    def test_approver_tokens_cannot_call_and_agent_tokens_cannot_decide(self):
        self.assert_error(self.call(T_CAROL, "echo", {"text": "x"}), 403, "forbidden")
        held = self.call(T_ALPHA, "ledger", {"account": "acme", "amount": 5})
        self.assertEqual(held.status, 202, held.body)
        h = held.json()
        d = self.gw.request("POST", "/v1/approvals/" + h["call_id"],
                            {"decision": "approve", "args_sha256": h["args_sha256"]}, headers=bearer(T_ALPHA))
        self.assert_error(d, 403, "forbidden")
        self.assert_error(self.get("/v1/approvals", T_ALPHA), 403, "forbidden")
        self.assertEqual(self.get("/v1/approvals", T_CAROL).status, 200)

    def test_argument_grant_is_checked_on_top_of_the_policy(self):
        over = self.call(T_ALPHA, "ledger", {"account": "acme", "amount": 500})
        self.assert_error(over, 422, "invalid_arguments")
        self.assertIn("grant of agent 'alpha'", over.json()["error"]["message"])
        self.assertIn("$.amount", over.json()["error"]["message"])
        # gamma has no grant schema: the policy alone applies.
        self.assertEqual(self.call(T_GAMMA, "ledger", {"account": "acme", "amount": 500}).status, 202)
        # The grant speaks the full schema language (not and const are JSON Schema 2020-12).
        other = self.call(T_ALPHA, "ledger", {"account": "vault", "amount": 5})
        self.assert_error(other, 422, "invalid_arguments")
        self.assertIn("$.account", other.json()["error"]["message"])
        under = self.call(T_ALPHA, "ledger", {"account": "acme", "amount": 50})
        self.assertEqual(under.status, 202, under.body)
        self.assertEqual(under.json()["status"], "pending_approval")

    def test_quota_max_pending(self):
        for i in range(2):
            self.assertEqual(self.call(T_ALPHA, "ledger", {"account": "a%d" % i, "amount": 1}).status, 202)
        r = self.call(T_ALPHA, "ledger", {"account": "a3", "amount": 1})
        self.assert_error(r, 429, "too_many_calls")
        self.assertIn("max_pending", r.json()["error"]["message"])
        self.assertTrue(int(r.headers["retry-after"]) > 0)
        self.assertTrue(any("max_pending" in x["message"] for x in self.rejected()))

    def test_quota_rate(self):
        for _ in range(3):
            self.assertEqual(self.call(T_GAMMA, "echo", {"text": "x"}).status, 200)
        r = self.call(T_GAMMA, "echo", {"text": "x"})
        self.assert_error(r, 429, "too_many_calls")
        self.assertIn("quota rate", r.json()["error"]["message"])
        self.assertTrue(int(r.headers["retry-after"]) >= 1)
        self.assertEqual(self.call(T_ALPHA, "echo", {"text": "x"}).status, 200)  # per agent

    def test_quota_max_concurrent(self):
        results = []
        t = threading.Thread(target=lambda: results.append(self.call(T_BETA, "slow")))
        t.start()
        # Wait until the first call runs (its call.started record is durable before it runs).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(r["event"] == "call.started" and r["tool"] == "slow"
                   for r in harness.audit_records(self.gw.state_dir)):
                break
            time.sleep(0.02)
        r = self.call(T_BETA, "echo", {"text": "x"})
        self.assert_error(r, 429, "too_many_calls")
        self.assertIn("max_concurrent", r.json()["error"]["message"])
        self.assertEqual(r.headers["retry-after"], "1")
        t.join()
        self.assertEqual(results[0].status, 200, results[0].body)
        self.assertEqual(self.call(T_BETA, "echo", {"text": "x"}).status, 200)

    def test_an_agent_reads_only_its_own_calls(self):
        r = self.call(T_ALPHA, "echo", {"text": "mine"})
        cid = r.json()["call_id"]
        self.assertEqual(self.get("/v1/calls/" + cid, T_ALPHA).status, 200)
        self.assert_error(self.get("/v1/calls/" + cid, T_BETA), 404, "call_not_found")
        self.assertEqual(self.get("/v1/calls/" + cid, T_CAROL).json()["stdout"], '{"text":"mine"}')
        held = self.call(T_ALPHA, "ledger", {"account": "acme", "amount": 7}).json()
        self.assert_error(self.get("/v1/calls/" + held["call_id"], T_GAMMA), 404, "call_not_found")
        self.assertEqual(self.get("/v1/calls/" + held["call_id"], T_ALPHA).status, 200)

    def test_approvers_limited_to_tools_and_listing_pages(self):
        ids = [self.call(T_GAMMA, "ledger", {"account": "p%d" % i, "amount": 1}).json()["call_id"]
               for i in range(3)]
        # dave may only see echo: no ledger call exists for him.
        self.assertEqual(self.get("/v1/approvals", T_DAVE).json()["approvals"], [])
        self.assert_error(self.get("/v1/approvals?call_id=" + ids[0], T_DAVE), 404, "call_not_found")
        seen, cursor = [], None
        while True:
            q = "/v1/approvals?limit=2" + ("&cursor=" + cursor if cursor else "")
            page = self.get(q, T_CAROL).json()
            self.assertLessEqual(len(page["approvals"]), 2)
            seen += [a["call_id"] for a in page["approvals"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        self.assertEqual(seen, ids)
        self.assert_error(self.get("/v1/approvals?limit=5000", T_CAROL), 400, "bad_request")


def run_serve(args, env=None, timeout=30):
    return subprocess.run([harness.GATEHOUSE, "serve"] + args, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


class StartupRulesTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="gh-agents-start-")
        self.pdir = os.path.join(self.root, "policies")
        harness.write_policy(self.pdir, "echo", POLICIES["echo"])
        self.state = os.path.join(self.root, "state")

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def test_readable_config_with_a_literal_secret_is_refused(self):
        cfg = os.path.join(self.root, "gw.yaml")
        with open(cfg, "w") as f:
            f.write("approval:\n  approvers:\n    carol: %s\n" % T_CAROL)
        os.chmod(cfg, 0o644)
        p = run_serve(["--listen", "127.0.0.1:%d" % harness.free_port(), "--policies", self.pdir,
                       "--state-dir", self.state, "--config", cfg])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(cfg, p.stderr)
        self.assertIn("chmod 600", p.stderr)
        self.assertIn("0644", p.stderr)
        os.chmod(cfg, 0o600)
        with harness.Gateway(self.pdir, extra_args=["--config", cfg]) as gw:
            self.assertEqual(gw.request("GET", "/v1/approvals", headers=bearer(T_CAROL)).status, 200)

    def test_readable_config_with_a_database_password_is_refused(self):
        for uri in ("postgresql://gh:s3cret@127.0.0.1:1/gh", "postgres://gh@127.0.0.1:1/gh?password=s3cret"):
            cfg = os.path.join(self.root, "db.yaml")
            with open(cfg, "w") as f:
                f.write("database: %s\n" % uri)
            os.chmod(cfg, 0o644)
            p = run_serve(["--listen", "127.0.0.1:%d" % harness.free_port(), "--policies", self.pdir,
                           "--state-dir", self.state, "--config", cfg])
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("chmod 600", p.stderr, uri)

    def test_non_loopback_listen_without_agents_is_refused(self):
        p = run_serve(["--listen", "0.0.0.0:%d" % harness.free_port(), "--policies", self.pdir,
                       "--state-dir", self.state])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("agents:", p.stderr)
        self.assertIn("not a loopback address", p.stderr)

    def test_anonymous_mode_is_logged_and_every_caller_is_anonymous(self):
        with harness.Gateway(self.pdir) as gw:
            self.assertIn("every caller is the agent 'anonymous'", gw.read_log())
            r = gw.call("echo", {"text": "x"})
            self.assertEqual(r.json()["agent"], "anonymous")
            self.assertEqual(gw.call("echo", {"text": "x"}, agent="someone").status, 403)

    def test_agents_add_prints_a_token_that_works(self):
        p = subprocess.run([harness.GATEHOUSE, "agents", "add", "newbot"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        token = p.stdout.split("token: ", 1)[1].split("\n", 1)[0]
        sha = p.stdout.split("token_sha256: ", 1)[1].split("\n", 1)[0]
        self.assertEqual(hashlib.sha256(token.encode()).hexdigest(), sha)
        cfg = os.path.join(self.root, "gw.yaml")
        with open(cfg, "w") as f:
            f.write("agents:\n  newbot:\n    token_sha256: %s\n    tools: [echo]\n" % sha)
        with harness.Gateway(self.pdir, extra_args=["--config", cfg]) as gw:
            r = gw.request("POST", "/v1/tools/echo/calls", {"arguments": {"text": "hi"}},
                           headers=bearer(token))
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["agent"], "newbot")

    def test_config_errors_name_the_line(self):
        cases = [
            ("agents:\n  a b:\n    token_env: X\n", "2:3: agent name 'a b'"),
            ("agents:\n  bot:\n    token_sha256: abc\n", "3:19: token_sha256 of agent 'bot' must be 64 hex"),
            ("agents:\n  bot:\n    token_env: GH_UNSET_VAR_X\n", "environment variable 'GH_UNSET_VAR_X' is not set"),
            ("agents:\n  bot:\n    token_env: T_ALPHA\n    rate: -1\n", "4:11: 'rate' must be a whole number"),
            ("agents:\n  bot:\n    token_env: T_ALPHA\n    toolz: []\n", "4:5: unknown key 'toolz'"),
            ("agents:\n  bot: {token_env: T_ALPHA}\n  bot2: {token_env: T_ALPHA}\n", "two identities share one token"),
            ("agnets: {}\n", "1:1: unknown key 'agnets'"),
        ]
        for text, want in cases:
            cfg = os.path.join(self.root, "gw.yaml")
            with open(cfg, "w") as f:
                f.write(text)
            p = run_serve(["--listen", "127.0.0.1:%d" % harness.free_port(), "--policies", self.pdir,
                           "--state-dir", self.state, "--config", cfg], env=ENV)
            self.assertEqual(p.returncode, 1, (text, p.stderr))
            self.assertIn(want, p.stderr, text)


READER = """name: {name}
description: tries to read the gateway's secrets and state
command: ["/usr/bin/python3", "-I", "-S", "-c", "import json,os,sys\\na=json.load(sys.stdin)\\nout={{}}\\nfor p in a['paths']:\\n  try:\\n    if os.path.isdir(p): os.listdir(p)\\n    else: open(p,'rb').read(1)\\n    out[p]='read'\\n  except OSError as e: out[p]=e.errno\\nprint(json.dumps(out))"]
isolation: {tier}
limits: {{wall_timeout: 20s, memory_mb: 256, pids: 16}}
filesystem: {{read_only: ["/usr", "{root}"]}}
arguments: {{type: object, properties: {{paths: {{type: array, items: {{type: string}}}}}}, additionalProperties: false}}
"""


class SecretsUnreadableByToolsTest(unittest.TestCase):
    """A process-tier and a container-tier tool try to read the config, the state directory,
    the SQLite files and the audit log: every attempt fails. The container tool even has the
    whole test root (config and state) bound into its sandbox."""

    def test_tools_cannot_read_config_or_state(self):
        root = tempfile.mkdtemp(prefix="gh-agents-sec-")
        os.chmod(root, 0o755)
        pdir = os.path.join(root, "policies")
        state = os.path.join(root, "state")
        os.mkdir(state, 0o700)
        for tier, name in (("process", "preader"), ("container", "creader")):
            harness.write_policy(pdir, name, READER.format(name=name, tier=tier, root=root))
        harness.write_policy(pdir, "ledger", POLICIES["ledger"])
        cfg = os.path.join(root, "gw.yaml")
        with open(cfg, "w") as f:
            f.write("approval:\n  webhook_url: http://127.0.0.1:9/hook\n"
                    "  webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                    "  approvers:\n    carol: %s\n" % T_CAROL)
        os.chmod(cfg, 0o600)
        try:
            with harness.Gateway(pdir, state_dir=state, extra_args=["--config", cfg]) as gw:
                self.assertEqual(gw.call("ledger", {"account": "acme", "amount": 9}).status, 202)
                paths = [cfg, state, os.path.join(state, "audit"),
                         os.path.join(state, "approval.db"), os.path.join(state, "approval.db-wal"),
                         os.path.join(state, "approval.db-shm")]
                paths += [os.path.join(state, "audit", f) for f in os.listdir(os.path.join(state, "audit"))]
                for p in paths:
                    self.assertTrue(os.path.exists(p), p)
                for tool in ("preader", "creader"):
                    r = gw.call(tool, {"paths": paths})
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(r.json()["status"], "succeeded", r.body)
                    got = json.loads(r.json()["stdout"])
                    for p in paths:
                        self.assertNotEqual(got[p], "read", "%s read %s" % (tool, p))
                # Modes: the state directory 0700, every file of the gateway's own 0600.
                self.assertEqual(stat.S_IMODE(os.stat(state).st_mode), 0o700)
                for p in paths[2:]:
                    mode = stat.S_IMODE(os.stat(p).st_mode)
                    self.assertEqual(mode & 0o077, 0, "%s has mode %o" % (p, mode))
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def test_existing_open_state_dir_is_tightened(self):
        root = tempfile.mkdtemp(prefix="gh-agents-st-")
        state = os.path.join(root, "state")
        os.mkdir(state, 0o755)
        os.chmod(state, 0o755)
        pdir = os.path.join(root, "policies")
        harness.write_policy(pdir, "echo", POLICIES["echo"])
        try:
            with harness.Gateway(pdir, state_dir=state) as gw:
                self.assertEqual(stat.S_IMODE(os.stat(state).st_mode), 0o700)
                self.assertIn("tightened to 0700", gw.read_log())
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
