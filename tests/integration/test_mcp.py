"""MCP, provider formats and the OpenAPI document (issue 11).

The official MCP TypeScript SDK client (npm @modelcontextprotocol/sdk, tests/mcp/scenarios.mjs)
against the real gateway, over streamable HTTP and through `gatehouse mcp` over stdio:
initialize, tools/list with annotations, a call, non-UTF-8 output, a schema violation, a failing
tool, an unknown tool, a held call approved while the client waits (progress seen, result
returned, exactly one execution), cancellation (withdrawn, audited), a client that goes away
(the hold stays and its result is readable), authentication failure. Then the transport rules
by hand (Origin, sessions bound to their agent, versions, batches), and the provider formats and
OpenAPI document checked by the providers' own packages (tests/mcp/check_formats.mjs).

The npm packages are installed once into /var/cache/gatehouse/npm-mcp-<hash of package.json and
package-lock.json>, outside the clone; the test skips (77) only if npm cannot install them.
"""
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

MCP_DIR = os.path.join(harness.SOURCE_DIR, "tests", "mcp")
T_ALPHA = "alpha-" + os.urandom(12).hex()
T_BETA = "beta-" + os.urandom(12).hex()
T_CAROL = "carol-" + os.urandom(12).hex()

POLICIES = {
    "echo": """name: echo
description: Print the arguments back.
command: ["/bin/cat"]
isolation: process
arguments:
  type: object
  properties: {text: {type: string, maxLength: 64}}
  required: [text]
  additionalProperties: false
""",
    "fail": """name: fail
description: Always fails.
command: ["/bin/sh", "-c", "echo boom >&2; exit 3"]
isolation: process
""",
    "bytes": """name: bytes
description: Writes two bytes that are not UTF-8.
command: ["/usr/bin/printf", '\\377\\376']
isolation: process
""",
    "ledger": """name: ledger
description: Append an entry to the ledger.
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
    memo: {type: string, maxLength: 64}
  required: [account, amount]
""",
}

CONFIG = """agents:
  alpha: {token_env: T_ALPHA, tools: ["*"]}
  beta: {token_env: T_BETA, tools: [echo]}
approval:
  approvers:
    carol: {token_env: T_CAROL}
"""


def npm_cache():
    """The installed packages' directory, installing them if needed; skips if npm cannot."""
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        with open(os.path.join(MCP_DIR, name), "rb") as f:
            h.update(f.read())
    root = os.environ.get("GATE_NPM_CACHE", "/var/cache/gatehouse")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        harness.skip("cannot create the npm cache directory %s: %s" % (root, e))
    target = os.path.join(root, "npm-mcp-" + h.hexdigest()[:16])
    if shutil.which("npm") is None or shutil.which("node") is None:
        harness.skip("node and npm are not installed (scripts/install-deps.sh installs them)")
    with open(os.path.join(root, ".npm-mcp.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing the same
        if os.path.exists(os.path.join(target, "node_modules", ".gatehouse-ok")):
            return target
        stage = tempfile.mkdtemp(prefix="npm-mcp-", dir=root)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(MCP_DIR, name), stage)
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                           cwd=stage, capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            shutil.rmtree(stage, ignore_errors=True)
            harness.skip("npm could not install the MCP test packages:\n" + p.stderr[-2000:])
        open(os.path.join(stage, "node_modules", ".gatehouse-ok"), "w").close()
        shutil.rmtree(target, ignore_errors=True)
        os.rename(stage, target)
    return target


def bearer(token):
    return {"Authorization": "Bearer " + token}


class McpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cache = npm_cache()
        cls.root = tempfile.mkdtemp(prefix="gh-mcp-")
        # The scripts run next to the cached node_modules (ES modules resolve from the file).
        cls.work = os.path.join(cls.root, "node")
        os.makedirs(cls.work)
        os.symlink(os.path.join(cache, "node_modules"), os.path.join(cls.work, "node_modules"))
        for name in ("scenarios.mjs", "check_formats.mjs", "package.json"):
            shutil.copy(os.path.join(MCP_DIR, name), cls.work)
        pdir = os.path.join(cls.root, "policies")
        for name, text in POLICIES.items():
            harness.write_policy(pdir, name, text)
        config = os.path.join(cls.root, "gatehouse.yaml")
        with open(config, "w") as f:
            f.write(CONFIG)
        env = {"T_ALPHA": T_ALPHA, "T_BETA": T_BETA, "T_CAROL": T_CAROL}
        cls.gw = harness.Gateway(pdir, extra_args=["--config", config], env=env).start()
        cls.url = "http://127.0.0.1:%d" % cls.gw.port

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        log = cls.gw.read_log()
        cls.gw.cleanup()
        shutil.rmtree(cls.root, ignore_errors=True)
        # Streams and sessions torn down cleanly: exit 0 (under ASan: no error, no leak).
        if rc != 0:
            raise AssertionError("gatehouse exited %s:\n%s" % (rc, log[-5000:]))

    def node(self, script, *args, mode="http"):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MODE": mode, "GW_URL": self.url,
               "GATEHOUSE": harness.GATEHOUSE, "AGENT_TOKEN": T_ALPHA, "APPROVER_TOKEN": T_CAROL}
        p = subprocess.run(["node", script] + list(args), cwd=self.work, env=env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, "%s failed:\n%s\n%s\ngateway log:\n%s" % (
            script, p.stdout, p.stderr, self.gw.read_log()[-3000:]))
        return json.loads(p.stdout.strip().splitlines()[-1])

    def events(self, call_id):
        return [r["event"] for r in harness.audit_records(self.gw.state_dir)
                if r.get("call_id") == call_id]

    def get_call(self, call_id, wait=None):
        path = "/v1/calls/" + call_id + ("?wait=" + wait if wait else "")
        return self.gw.request("GET", path, headers=bearer(T_ALPHA)).json()

    def check_sdk_run(self, mode):
        seen = self.node("scenarios.mjs", mode=mode)
        self.assertRegex(seen["auth_error"], "401|nauthorized|credentials")
        # Approved while the client waited: progress seen, and it ran exactly once.
        self.assertGreaterEqual(seen["progress_seen"], 1)
        self.assertEqual(self.events(seen["approved_call"]).count("call.started"), 1)
        self.assertEqual(self.get_call(seen["approved_call"])["status"], "succeeded")
        # Cancelled: withdrawn, audited, never run.
        ev = self.events(seen["cancelled_call"])
        self.assertIn("call.withdrawn", ev)
        self.assertNotIn("call.started", ev)
        # The client went away: the hold stays; approved later, its result is retrievable.
        gone = seen["disconnected_call"]
        rec = self.get_call(gone)
        self.assertEqual(rec["status"], "pending_approval", rec)
        r = self.gw.request("POST", "/v1/approvals/" + gone, {
            "decision": "approve", "args_sha256": rec["approval"]["args_sha256"]},
            headers=bearer(T_CAROL))
        self.assertEqual(r.status, 200, r.body)
        rec = self.get_call(gone, wait="60s")
        self.assertEqual(rec["status"], "succeeded", rec)
        self.assertIn('"account":"gone"', rec["stdout"])
        self.assertEqual(self.events(gone).count("call.started"), 1)

    def test_sdk_over_streamable_http(self):
        self.check_sdk_run("http")

    def test_sdk_over_stdio_bridge(self):
        self.check_sdk_run("stdio")

    def post(self, message, headers=None, token=T_ALPHA):
        h = {"Accept": "application/json, text/event-stream"}
        h.update(bearer(token))
        h.update(headers or {})
        return self.gw.request("POST", "/mcp", message, headers=h)

    def initialize(self, token=T_ALPHA, version="2025-06-18"):
        r = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                       "params": {"protocolVersion": version, "capabilities": {},
                                  "clientInfo": {"name": "t", "version": "1"}}}, token=token)
        self.assertEqual(r.status, 200, r.body)
        return r

    def test_versions_origin_and_sessions(self):
        for v in ("2025-06-18", "2025-03-26"):
            self.assertEqual(self.initialize(version=v).json()["result"]["protocolVersion"], v)
        self.assertEqual(self.initialize(version="1999-01-01").json()["result"]["protocolVersion"],
                         "2025-06-18")
        r = self.initialize()
        sid = r.headers["mcp-session-id"]
        self.assertRegex(sid, "^mcp_[0-9a-f]{64}$")
        self.assertNotEqual(sid, self.initialize().headers["mcp-session-id"])
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        self.assertEqual(self.post(ping, {"Mcp-Session-Id": sid}).json()["result"], {})
        # DNS rebinding: a browser page from another origin is refused; loopback is served.
        r = self.post(ping, {"Mcp-Session-Id": sid, "Origin": "http://evil.example"})
        self.assertEqual((r.status, r.json()["error"]["code"]), (403, "origin_not_allowed"))
        r = self.post(ping, {"Mcp-Session-Id": sid, "Origin": "http://localhost:3000"})
        self.assertEqual(r.status, 200)
        # Authentication as for the JSON API.
        self.assertEqual(self.post(ping, {"Mcp-Session-Id": sid}, token="nope-0123456789").status, 401)
        # A session belongs to the agent that made it: another agent's token cannot use it.
        self.assertEqual(self.post(ping, {"Mcp-Session-Id": sid}, token=T_BETA).status, 404)
        self.assertEqual(self.post(ping).status, 400)  # no session
        self.assertEqual(self.post(ping, {"Mcp-Session-Id": sid,
                                          "MCP-Protocol-Version": "1999-01-01"}).status, 400)
        # Beta sees only its granted tool.
        bsid = self.initialize(token=T_BETA).headers["mcp-session-id"]
        tools = self.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                          {"Mcp-Session-Id": bsid}, token=T_BETA).json()["result"]["tools"]
        self.assertEqual([t["name"] for t in tools], ["echo"])
        # Protocol errors are JSON-RPC errors.
        r = self.post({"jsonrpc": "2.0", "id": 3, "method": "no/such"}, {"Mcp-Session-Id": sid})
        self.assertEqual(r.json()["error"]["code"], -32601)
        r = self.gw.request("POST", "/mcp", b"{nope", raw=True, headers=dict(bearer(T_ALPHA)))
        self.assertEqual((r.status, r.json()["error"]["code"]), (400, -32700))
        r = self.gw.request("POST", "/mcp", [ping], headers=dict(bearer(T_ALPHA)))
        self.assertEqual((r.status, r.json()["error"]["code"]), (400, -32600))
        # GET /mcp is an event stream only.
        r = self.gw.request("GET", "/mcp", headers=dict(bearer(T_ALPHA), **{"Mcp-Session-Id": sid}))
        self.assertEqual(r.status, 405)
        # DELETE ends the session.
        r = self.gw.request("DELETE", "/mcp", headers=dict(bearer(T_ALPHA), **{"Mcp-Session-Id": sid}))
        self.assertEqual(r.status, 204)
        self.assertEqual(self.post(ping, {"Mcp-Session-Id": sid}).status, 404)

    def test_one_agent_cannot_push_out_anothers_sessions(self):
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        beta = self.initialize(token=T_BETA).headers["mcp-session-id"]
        first = self.initialize().headers["mcp-session-id"]
        for _ in range(256):  # MAX_SESSIONS_PER_AGENT: alpha's oldest goes
            self.initialize()
        self.assertEqual(self.post(ping, {"Mcp-Session-Id": first}).status, 404)
        self.assertEqual(self.post(ping, {"Mcp-Session-Id": beta}, token=T_BETA).status, 200)

    def test_event_stream_of_get_opens(self):
        sid = self.initialize().headers["mcp-session-id"]
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=30)
        conn.request("GET", "/mcp", headers=dict(bearer(T_ALPHA), **{
            "Mcp-Session-Id": sid, "Accept": "text/event-stream"}))
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("content-type").startswith("text/event-stream"))
        self.assertEqual(resp.readline(), b": keep-alive\n")  # http.client undoes the chunking
        resp.close()
        conn.close()

    def test_provider_formats_and_openapi(self):
        seen = self.node("check_formats.mjs", self.work)
        # strict only where every property is required and additionalProperties is false.
        self.assertTrue(seen["strict"]["echo"])
        self.assertFalse(seen["strict"]["ledger"])
        self.assertEqual(seen["openapi_version"], "3.1")
        # The served document is the one in the repository.
        r = self.gw.request("GET", "/v1/openapi.json")
        with open(os.path.join(harness.SOURCE_DIR, "docs", "openapi.json"), "rb") as f:
            self.assertEqual(r.body, f.read())
        doc = r.json()
        # Every status of the error table, and every route of the route table, is documented.
        with open(os.path.join(harness.SOURCE_DIR, "common", "include", "gate.h")) as f:
            statuses = set(re.findall(r'X\(\w+, "\w+", (\d{3}),', f.read()))
        documented = set()
        for item in doc["paths"].values():
            for op in item.values():
                documented |= set(op["responses"])
        self.assertEqual(statuses - documented - {"200"}, set())
        with open(os.path.join(harness.SOURCE_DIR, "gateway", "server.c")) as f:
            routes = re.findall(r'\{"(GET|POST|DELETE)", "([^"]+)", AUTH_', f.read())
        for method, pattern in routes:
            parts = pattern.split("/")
            match = [p for p in doc["paths"] if len(p.split("/")) == len(parts) and all(
                a == "*" and b.startswith("{") or a == b for a, b in zip(parts, p.split("/")))]
            self.assertTrue(match and method.lower() in doc["paths"][match[0]], (method, pattern))
        bad = self.gw.request("GET", "/v1/tools?format=nope", headers=bearer(T_ALPHA))
        self.assertEqual((bad.status, bad.json()["error"]["code"]), (400, "bad_request"))


class McpRawStreamTest(unittest.TestCase):
    """A held call's event stream read by hand: one gateway per test."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="gh-mcp-raw-")
        pdir = os.path.join(self.root, "policies")
        harness.write_policy(pdir, "ledger", POLICIES["ledger"])
        config = os.path.join(self.root, "gatehouse.yaml")
        with open(config, "w") as f:
            f.write(CONFIG)
        self.gw = harness.Gateway(pdir, extra_args=["--config", config], env={
            "T_ALPHA": T_ALPHA, "T_BETA": T_BETA, "T_CAROL": T_CAROL}).start()

    def tearDown(self):
        self.gw.stop()
        self.gw.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def held_stream(self):
        """POST a held tools/call; returns (response, next_event, call id from the first)."""
        h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        h.update(bearer(T_ALPHA))
        r = self.gw.request("POST", "/mcp", {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                             "params": {"protocolVersion": "2025-06-18"}}, headers=h)
        h["Mcp-Session-Id"] = r.headers["mcp-session-id"]
        self.conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=60)
        self.addCleanup(self.conn.close)
        self.conn.request("POST", "/mcp", json.dumps({
            "jsonrpc": "2.0", "id": "held-1", "method": "tools/call",
            "params": {"name": "ledger", "arguments": {"account": "a", "amount": 1},
                       "_meta": {"progressToken": "p"}}}), headers=h)
        resp = self.conn.getresponse()
        self.addCleanup(resp.close)
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("content-type").startswith("text/event-stream"))

        def next_event():
            while True:
                line = resp.readline()
                if not line:
                    return None
                if line.startswith(b"data: "):
                    return json.loads(line[6:])

        first = next_event()
        self.assertEqual(first["method"], "notifications/progress")
        self.assertEqual(first["params"]["progressToken"], "p")
        call_id = first["params"]["_meta"]["gatehouse/call_id"]
        self.assertIn(call_id, first["params"]["message"])
        return resp, next_event, call_id

    def test_denied_call_answers_with_the_reason(self):
        resp, next_event, call_id = self.held_stream()
        rec = self.gw.request("GET", "/v1/calls/" + call_id, headers=bearer(T_ALPHA)).json()
        r = self.gw.request("POST", "/v1/approvals/" + call_id, {
            "decision": "deny", "reason": "not this quarter",
            "args_sha256": rec["approval"]["args_sha256"]}, headers=bearer(T_CAROL))
        self.assertEqual(r.status, 200, r.body)
        last = next_event()
        self.assertEqual(last["id"], "held-1", last)
        self.assertTrue(last["result"]["isError"])
        self.assertRegex(last["result"]["content"][0]["text"], "denied.*not this quarter")
        self.assertIsNone(next_event())  # and the stream ends

    def test_held_call_without_a_stream_answers_json_even_with_a_progress_token(self):
        """A client that accepts only JSON gets the result as one JSON body once the call is
        decided; its progressToken cannot be honoured (there is no stream). Before, the first
        progress notification was sent at once as the whole response (500, no result)."""
        h = {"Accept": "application/json, text/event-stream"}
        h.update(bearer(T_ALPHA))
        r = self.gw.request("POST", "/mcp", {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                             "params": {"protocolVersion": "2025-06-18"}}, headers=h)
        h.update({"Accept": "application/json", "Mcp-Session-Id": r.headers["mcp-session-id"]})
        answers = []
        waiter = threading.Thread(target=lambda: answers.append(self.gw.request("POST", "/mcp", {
            "jsonrpc": "2.0", "id": "held-1", "method": "tools/call",
            "params": {"name": "ledger", "arguments": {"account": "a", "amount": 1},
                       "_meta": {"progressToken": "p"}}}, headers=h)))
        waiter.start()
        pending = lambda: self.gw.request(  # noqa: E731
            "GET", "/v1/approvals?status=pending", headers=bearer(T_CAROL)).json()["approvals"]
        self.assertTrue(harness.wait_until(lambda: answers or pending(), 30), "not held")
        self.assertEqual(answers, [], answers and answers[0].body)
        call_id = pending()[0]["call_id"]
        rec = self.gw.request("GET", "/v1/calls/" + call_id, headers=bearer(T_ALPHA)).json()
        r = self.gw.request("POST", "/v1/approvals/" + call_id, {
            "decision": "deny", "args_sha256": rec["approval"]["args_sha256"]},
            headers=bearer(T_CAROL))
        self.assertEqual(r.status, 200, r.body)
        waiter.join(60)
        self.assertEqual((answers[0].status, answers[0].headers.get("content-type")),
                         (200, "application/json"), answers[0].body)
        self.assertEqual(answers[0].json()["id"], "held-1")
        self.assertTrue(answers[0].json()["result"]["isError"])

    def test_sigterm_answers_a_client_waiting_for_a_held_call(self):
        """SIGTERM while a client waits: the stream ends with a tool error naming the call
        (still held), and the gateway exits 0."""
        resp, next_event, call_id = self.held_stream()
        self.gw.send_signal(signal.SIGTERM)
        last = next_event()
        self.assertEqual(last["id"], "held-1", last)
        self.assertTrue(last["result"]["isError"])
        self.assertIn(call_id, last["result"]["content"][0]["text"])
        self.assertEqual(self.gw.stop(), 0, self.gw.read_log()[-3000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
