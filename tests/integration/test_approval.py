"""Human approval for irreversible tools, end to end against the real gateway.

A webhook receiver on loopback, started here, checks every delivery with its own
Standard Webhooks verification (Python's hmac/base64, independent of gatehouse's C
code) and is what approves through the decision token; for https:// it serves TLS
(Python's ssl) with certificates of a test CA made here with the openssl command.
Side effects are checked through the ledger tool's own file: one line per execution.
Every wait polls state (the receiver, the listing, the log) against a deadline.
"""
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ALICE = "3f9c0c6b5e2d4a71-alice-token"
BOB = "9e1d77aa04c2b5f3-bob-token"
TOLERANCE_S = 300  # the receiver's accepted clock skew, as Standard Webhooks recommends
WAIT_S = 60        # upper bound for anything that should happen "soon"; never a performance check

TOOL = os.path.join(harness.BUILD_POLICIES, "tools", "ledger")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ---- the independent receiver ------------------------------------------------------------

def sign(key, msg_id, ts, body):
    mac = hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(secret, headers, body, now=None):
    """Standard Webhooks verification. Returns (http status, reason)."""
    key = base64.b64decode(secret[len("whsec_"):])
    msg_id, ts, sigs = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and ts and sigs):
        return 400, "missing webhook headers"
    try:
        t = int(ts)
    except ValueError:
        return 400, "bad timestamp"
    now = time.time() if now is None else now
    if t < now - TOLERANCE_S:
        return 400, "timestamp too old"
    if t > now + TOLERANCE_S:
        return 400, "timestamp in the future"
    expected = sign(key, msg_id, ts, body)
    for sig in sigs.split(" "):
        if hmac.compare_digest(sig.encode(), expected.encode()):
            return 204, "ok"
    return 401, "signature mismatch"


class Receiver:
    """Answers 2xx only to deliveries whose signature and timestamp verify. With a PKI, it
    speaks TLS with the certificate named by use_cert (which can change between deliveries)
    and counts handshakes that failed."""

    def __init__(self, port=None, secret=SECRET, pki=None):
        self.port = port or harness.free_port()
        self.secret = secret
        self.pki = pki
        self.tls = None  # the server's ssl.SSLContext, with pki
        self.cond = threading.Condition()
        self.accepted = []  # (headers, body bytes, payload)
        self.rejected = []  # (status, reason)
        self.handshake_failures = []  # ssl errors the server saw
        self.server = None

    def use_cert(self, name):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.pki, name + ".pem"), os.path.join(self.pki, name + ".key"))
        with self.cond:
            self.tls = ctx
        return self

    def start(self):
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def setup(self):
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.settimeout(WAIT_S)
                    try:
                        self.request.do_handshake()
                    except (ssl.SSLError, OSError) as e:
                        with rec.cond:
                            rec.handshake_failures.append(repr(e))
                            rec.cond.notify_all()
                        raise
                super().setup()

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, reason = verify(rec.secret, headers, body)
                with rec.cond:
                    if status == 204:
                        rec.accepted.append((headers, body, json.loads(body)))
                    else:
                        rec.rejected.append((status, reason))
                    rec.cond.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                with rec.cond:
                    tls = rec.tls
                if tls:  # the handshake runs on the handler's thread
                    sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, addr

            def handle_error(self, request, client_address):
                pass  # a refused handshake is counted in Handler.setup

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def post(self, headers, body):
        """Send a (possibly forged) delivery to this receiver; returns its HTTP status."""
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", "/hook", body=body, headers=dict(headers, **{"content-type": "application/json"}))
        st = c.getresponse().status
        c.close()
        return st

    def wait_handshake_failures(self, n, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.handshake_failures) < n:
                left = deadline - time.monotonic()
                check(left > 0, "fewer than %d refused handshakes: %r" % (n, self.handshake_failures))
                self.cond.wait(left)

    def wait_for(self, call_id, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for h, b, p in self.accepted:
                    if p.get("call_id") == call_id:
                        return h, b, p
                left = deadline - time.monotonic()
                check(left > 0, "no verified webhook for %s (rejected: %r)" % (call_id, self.rejected))
                self.cond.wait(left)


# ---- setup ----------------------------------------------------------------------------------

POLICY = """name: {name}
description: ledger for tests
command: ["{tool}"]
isolation: process
blast_radius: high
reversible: false
approval:
  required: true
  timeout: {timeout}
env:
  LEDGER_DIR: {ledger}
{extra_env}limits:
  wall_timeout: {wall}
  memory_mb: 64
  pids: 8
arguments:
  type: object
  properties:
    account: {{type: string, maxLength: 64}}
    amount: {{type: integer}}
  required: [account, amount]
  additionalProperties: false
"""


class Env:
    def __init__(self, receiver_port, webhook_url=None, gateway_env=None, extra_config=""):
        self.root = tempfile.mkdtemp(prefix="gh-approval-")
        os.chmod(self.root, 0o755)  # the tool runs as nobody and must reach the ledger
        self.ledger = os.path.join(self.root, "ledger")
        os.mkdir(self.ledger)
        os.chmod(self.ledger, 0o777)
        self.policies = os.path.join(self.root, "policies")
        self.state = os.path.join(self.root, "state")
        os.mkdir(self.state)
        for name, timeout, extra, wall in (("ledger", "1h", "", "10s"),
                                           ("ledger_short", "2s", "", "10s"),
                                           ("ledger_slow", "1h", "  LEDGER_DELAY_MS: \"600000\"\n", "20m")):
            harness.write_policy(self.policies, name, POLICY.format(
                name=name, tool=TOOL, timeout=timeout, ledger=self.ledger, extra_env=extra, wall=wall))
        self.config = os.path.join(self.root, "gatehouse.yaml")
        url = webhook_url or "http://127.0.0.1:%d/hook" % receiver_port
        with open(self.config, "w") as f:
            f.write("approval:\n  webhook_url: %s\n  webhook_secret_env: TEST_WEBHOOK_SECRET\n%s"
                    "  approvers:\n    alice: %s\n    bob: %s\n" % (url, extra_config, ALICE, BOB))
        os.chmod(self.config, 0o600)  # it holds literal tokens: the gateway refuses a readable one
        self.gateway_env = dict(gateway_env or {}, TEST_WEBHOOK_SECRET=SECRET)
        self.gw = None

    def start(self):
        self.gw = harness.Gateway(self.policies, state_dir=self.state, extra_args=["--config", self.config],
                                  env=self.gateway_env)
        return self.gw.start()

    def executions(self, call_id):
        path = os.path.join(self.ledger, "ledger.jsonl")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return sum(1 for line in f if line.strip() and json.loads(line)["call_id"] == call_id)

    def stop_and_verify(self):
        """A clean stop (exit 0: no sanitizer report either) and an intact audit chain."""
        rc = self.gw.stop()
        check(rc == 0, "gateway exited %r:\n%s" % (rc, self.gw.read_log()[-4000:]))
        self.verify_audit()

    def verify_audit(self):
        rc, out = harness.verify_audit(self.state)
        check(rc == 0, "audit verify failed: " + out)

    def events(self, call_id):
        return [r["event"] for r in harness.audit_records(self.state) if r.get("call_id") == call_id]

    def close(self):
        if self.gw:
            self.gw.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def auth(token):
    return {"authorization": "Bearer " + token}


def hold(gw, tool="ledger", amount=100):
    r = gw.call(tool, {"account": "acme", "amount": amount})
    check(r.status == 202, "hold: %d %s" % (r.status, r.body))
    body = r.json()
    check(body["status"] == "pending_approval", body)
    check(body["poll"] == "/v1/calls/" + body["call_id"], body)
    return body


def decide(gw, call_id, token, decision="approve", args_sha256=None, approver="alice", **extra):
    body = {"decision": decision, "approver": approver, "args_sha256": args_sha256}
    body.update(extra)
    return gw.request("POST", "/v1/approvals/" + call_id, body, headers=auth(token))


def err_code(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError):
        return None


def final(gw, call_id):
    r = gw.request("GET", "/v1/calls/%s?wait=30s" % call_id, timeout=WAIT_S)
    check(r.status == 200, "poll %s: %d %s" % (call_id, r.status, r.body))
    return r.json()


def wait_until(pred, what, timeout=WAIT_S):
    """Poll pred until it holds; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not pred():
        check(time.monotonic() < deadline, "timed out waiting for " + what)
        time.sleep(0.05)


def webhook_state(gw, call_id):
    """The listing's webhook delivery state of a held call: {url, delivered, attempts}."""
    r = gw.request("GET", "/v1/approvals?call_id=" + call_id, headers=auth(ALICE))
    check(r.status == 200, r.body)
    return r.json()["approvals"][0]["webhook"]


def wait_delivered(gw, call_id):
    """The receiver answers before the gateway reads that answer and records the delivery
    (with its webhook.sent record): wait for the gateway's side, not the receiver's."""
    wait_until(lambda: webhook_state(gw, call_id)["delivered"], "the delivered flag of " + call_id)
    return webhook_state(gw, call_id)


# ---- tests ----------------------------------------------------------------------------------

def test_whole_flow_webhook_approve_long_poll_runs_once():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        held = hold(gw)
        cid = held["call_id"]
        headers, raw, payload = rec.wait_for(cid)
        wait_delivered(gw, cid)
        # What the approver is shown is exactly what will run.
        check(payload["tool"] == "ledger" and payload["arguments"] == {"account": "acme", "amount": 100}, payload)
        canon = json.dumps(payload["arguments"], sort_keys=True, separators=(",", ":")).encode()
        check(payload["args_sha256"] == hashlib.sha256(canon).hexdigest() == held["args_sha256"], payload)
        check(payload["agent"] == "anonymous" and payload["blast_radius"] == "high", payload)
        check(payload["decide_url"].endswith("/v1/approvals/" + cid), payload)
        check(payload["policy_sha256"] == held["policy_sha256"], payload)
        check(payload["decision_token"].startswith("gdt_"), payload)
        # Pending is listed for approvers, and only for them.
        r = gw.request("GET", "/v1/approvals?status=pending")
        check(r.status == 401 and err_code(r) == "unauthorized", r.body)
        r = gw.request("GET", "/v1/approvals?status=pending", headers=auth(BOB))
        check([c["call_id"] for c in r.json()["approvals"]] == [cid], r.body)
        # A poll before the decision says pending (and returns when the wait ends).
        r = gw.request("GET", "/v1/calls/%s?wait=100ms" % cid)
        check(r.json()["status"] == "pending_approval", r.body)
        check(env.executions(cid) == 0, "ran before approval")
        # The receiver approves with the single-use decision token.
        r = decide(gw, cid, payload["decision_token"], args_sha256=payload["args_sha256"],
                   approver="receiver", tool="ledger", policy_sha256=payload["policy_sha256"])
        check(r.status == 200 and r.json()["decision"] == "approve", r.body)
        rec_ = final(gw, cid)
        check(rec_["status"] == "succeeded", rec_)
        check(json.loads(rec_["stdout"])["call_id"] == cid, rec_)
        check(env.executions(cid) == 1, "ledger lines %d" % env.executions(cid))
        # The token is single-use: a replay is refused and runs nothing.
        r = decide(gw, cid, payload["decision_token"], args_sha256=payload["args_sha256"], approver="receiver")
        check(r.status == 409 and err_code(r) == "already_decided", r.body)
        ev = env.events(cid)
        for e in ("call.held", "webhook.sent", "call.approved", "call.started", "call.finished"):
            check(ev.count(e) == 1, "%s in %r" % (e, ev))
        check(ev.index("call.held") < ev.index("call.approved") < ev.index("call.started"), ev)
        check(env.executions(cid) == 1, "ran twice")
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()


def test_receiver_rejects_forged_wrong_secret_stale_future():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        cid = hold(gw)["call_id"]
        headers, raw, payload = rec.wait_for(cid)
        h = {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        key = base64.b64decode(SECRET[6:])
        tampered = raw.replace(b'"amount":100', b'"amount":999')
        check(tampered != raw, "tamper failed")
        cases = [
            ("forged body", h, tampered, 401),
            ("wrong secret", dict(h, **{"webhook-signature": sign(b"not the secret", h["webhook-id"],
                                                                  h["webhook-timestamp"], raw)}), raw, 401),
            ("forged signature", dict(h, **{"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}), raw, 401),
        ]
        for label, delta in (("stale", -2 * TOLERANCE_S), ("future", 2 * TOLERANCE_S)):
            ts = str(int(time.time()) + delta)
            cases.append(("%s timestamp" % label,
                          dict(h, **{"webhook-timestamp": ts, "webhook-signature": sign(key, h["webhook-id"], ts, raw)}),
                          raw, 400))
            # The same with the genuine signature of another time: the signature check fails too.
            cases.append(("%s timestamp, old signature" % label, dict(h, **{"webhook-timestamp": ts}), raw, 400))
        for label, hh, body, want in cases:
            st = rec.post(hh, body)
            check(st == want, "%s: receiver answered %d, want %d" % (label, st, want))
        # The genuine delivery verifies (so the checks above are not vacuous).
        check(rec.post(h, raw) == 204, "genuine delivery rejected")
        # Nothing was decided on the strength of a rejected delivery: nothing ran.
        r = gw.request("GET", "/v1/calls/" + cid)
        check(r.json()["status"] == "pending_approval", r.body)
        check(env.executions(cid) == 0, "executed")
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()


def test_refused_decisions_execute_nothing():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        a, b = hold(gw), hold(gw, amount=200)
        pa = rec.wait_for(a["call_id"])[2]
        rec.wait_for(b["call_id"])
        cases = [
            ("no credentials", gw.request("POST", "/v1/approvals/" + a["call_id"],
                                          {"decision": "approve", "args_sha256": a["args_sha256"]}), 401, "unauthorized"),
            ("unknown token", decide(gw, a["call_id"], "gdt_" + "0" * 64, args_sha256=a["args_sha256"]), 401, "unauthorized"),
            ("approver token used under another name", decide(gw, a["call_id"], BOB, args_sha256=a["args_sha256"],
                                                              approver="alice"), 401, "unauthorized"),
            ("decision token for another call", decide(gw, b["call_id"], pa["decision_token"],
                                                       args_sha256=b["args_sha256"], approver="receiver"), 403, "decision_mismatch"),
            ("changed arguments", decide(gw, a["call_id"], ALICE, args_sha256=b["args_sha256"]), 403, "decision_mismatch"),
            ("another tool", decide(gw, a["call_id"], ALICE, args_sha256=a["args_sha256"], tool="echo"), 403, "decision_mismatch"),
            ("another policy", decide(gw, a["call_id"], ALICE, args_sha256=a["args_sha256"], policy_sha256="0" * 64),
             403, "decision_mismatch"),
            ("unknown call", decide(gw, "c_" + "0" * 32, ALICE, args_sha256=a["args_sha256"]), 404, "call_not_found"),
        ]
        for label, r, status, code in cases:
            check(r.status == status and err_code(r) == code, "%s: %d %s" % (label, r.status, r.body))
        # Deny is final: a later approve is a conflict, and nothing ran.
        r = decide(gw, b["call_id"], ALICE, "deny", args_sha256=b["args_sha256"], reason="not today")
        check(r.status == 200 and r.json()["status"] == "denied", r.body)
        r = decide(gw, b["call_id"], BOB, args_sha256=b["args_sha256"], approver="bob")
        check(r.status == 409 and err_code(r) == "already_decided", r.body)
        check(final(gw, b["call_id"])["status"] == "denied", "b not denied")
        # Decision after expiry: 410, and the call is expired.
        c = hold(gw, tool="ledger_short")
        exp = datetime.datetime.strptime(c["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        exp = exp.replace(tzinfo=datetime.timezone.utc).timestamp()
        wait_until(lambda: time.time() > exp, "the end of the approval window")
        r = decide(gw, c["call_id"], ALICE, args_sha256=c["args_sha256"])
        check(r.status == 410 and err_code(r) == "approval_expired", r.body)
        check(final(gw, c["call_id"])["status"] == "expired", "c not expired")
        r = decide(gw, c["call_id"], ALICE, args_sha256=c["args_sha256"])
        check(r.status == 410, r.body)
        for call in (a, b, c):
            check(env.executions(call["call_id"]) == 0, "executed " + call["call_id"])
        check(env.events(c["call_id"]).count("call.expired") == 1, env.events(c["call_id"]))
        check(gw.request("GET", "/v1/calls/" + a["call_id"]).json()["status"] == "pending_approval", "a moved")
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()


def race(gw, call_id, decisions):
    """Send every decision at once from its own thread; returns the HTTP statuses."""
    start = threading.Barrier(len(decisions))
    out = [None] * len(decisions)

    def one(i, token, decision, approver, sha):
        start.wait()
        try:
            out[i] = (decision, decide(gw, call_id, token, decision, args_sha256=sha, approver=approver).status)
        except OSError as e:
            out[i] = (decision, repr(e))

    threads = [threading.Thread(target=one, args=(i,) + d) for i, d in enumerate(decisions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_200_concurrent_approvals_one_transition_one_execution():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        a = hold(gw)
        out = race(gw, a["call_id"], [(ALICE, "approve", "alice", a["args_sha256"])] * 200)
        statuses = [s for _, s in out]
        check(statuses.count(200) == 1 and statuses.count(409) == 199, "statuses %r" % sorted(set(map(str, statuses))))
        check(final(gw, a["call_id"])["status"] == "succeeded", "not run")
        check(env.executions(a["call_id"]) == 1, "executions %d" % env.executions(a["call_id"]))
        check(env.events(a["call_id"]).count("call.approved") == 1, "approved twice")
        # Approve racing deny: one winner, and the ledger agrees with it.
        b = hold(gw, amount=5)
        ds = [(ALICE, "approve", "alice", b["args_sha256"]), (BOB, "deny", "bob", b["args_sha256"])] * 100
        out = race(gw, b["call_id"], ds)
        winners = [d for d, s in out if s == 200]
        check(len(winners) == 1 and sum(1 for _, s in out if s == 409) == 199, "race %r" % out[:4])
        st = final(gw, b["call_id"])["status"]
        want = 1 if winners[0] == "approve" else 0
        check(st == ("succeeded" if want else "denied"), st)
        check(env.executions(b["call_id"]) == want, "executions %d" % env.executions(b["call_id"]))
        ev = env.events(b["call_id"])
        check(ev.count("call.approved") + ev.count("call.denied") == 1, ev)
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()


def test_restart_pending_stays_pending_and_is_approvable():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        a = hold(gw)
        pa = rec.wait_for(a["call_id"])[2]
        gw.kill9()
        gw = env.start()
        r = gw.request("GET", "/v1/calls/" + a["call_id"])
        check(r.status == 200 and r.json()["status"] == "pending_approval", r.body)
        check(r.json()["expires_at"] == a["expires_at"], "expiry changed")
        # The delivered webhook's token is honoured after the restart.
        r = decide(gw, a["call_id"], pa["decision_token"], args_sha256=a["args_sha256"], approver="receiver")
        check(r.status == 200, r.body)
        check(final(gw, a["call_id"])["status"] == "succeeded", "not run")
        check(env.executions(a["call_id"]) == 1, "executions")
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()


def test_restart_delivers_undelivered_webhook():
    rec = Receiver()  # not listening yet: deliveries fail
    env = Env(rec.port)
    try:
        gw = env.start()
        a = hold(gw)

        wait_until(lambda: webhook_state(gw, a["call_id"])["attempts"] >= 2, "failed delivery attempts")
        gw.kill9()
        rec.start()
        gw = env.start()
        _, _, p = rec.wait_for(a["call_id"])
        check(p["args_sha256"] == a["args_sha256"], p)
        # The attempt that succeeded counts once the gateway has read its answer.
        wh = wait_delivered(gw, a["call_id"])
        # The failed attempts before the restart stay counted; the count is at least theirs.
        check(wh["attempts"] >= 2, wh)
        r = decide(gw, a["call_id"], p["decision_token"], args_sha256=a["args_sha256"], approver="receiver")
        check(r.status == 200, r.body)
        check(final(gw, a["call_id"])["status"] == "succeeded", "not run")
        check(env.executions(a["call_id"]) == 1, "executions")
        check(env.events(a["call_id"]).count("webhook.sent") == 1, env.events(a["call_id"]))
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()


def test_restart_with_approved_call_running_marks_interrupted_never_reruns():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        a = hold(gw, tool="ledger_slow")
        rec.wait_for(a["call_id"])
        r = decide(gw, a["call_id"], ALICE, args_sha256=a["args_sha256"])
        check(r.status == 200, r.body)
        # The tool has made its irreversible write and is still running.
        wait_until(lambda: env.executions(a["call_id"]) == 1, "the ledger write")
        check(gw.request("GET", "/v1/calls/" + a["call_id"]).json()["status"] == "running", "not running")
        gw.kill9()
        gw = env.start()
        rec_ = final(gw, a["call_id"])
        check(rec_["status"] == "interrupted" and rec_["state"] == "interrupted", rec_)
        ev = env.events(a["call_id"])
        check(ev.count("call.interrupted") == 1 and ev.count("call.started") == 1, ev)
        # A second restart does not run it either.
        gw.stop()
        gw = env.start()
        check(final(gw, a["call_id"])["status"] == "interrupted", "state changed")
        r = decide(gw, a["call_id"], ALICE, args_sha256=a["args_sha256"])
        check(r.status == 409, r.body)
        check(env.executions(a["call_id"]) == 1, "re-run: %d executions" % env.executions(a["call_id"]))
        check(env.events(a["call_id"]).count("call.started") == 1, "started again")
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()


def test_cli_lists_shows_and_approves():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        a = hold(gw)
        url = "http://127.0.0.1:%d" % gw.port
        cli_env = dict(os.environ, GATEHOUSE_APPROVER_TOKEN=ALICE)

        def cli(*args):
            return subprocess.run([harness.GATEHOUSE, "approvals"] + list(args) + ["--url", url],
                                  capture_output=True, text=True, env=cli_env, timeout=WAIT_S)
        p = cli("list")
        check(p.returncode == 0 and a["call_id"] in p.stdout, p.stdout + p.stderr)
        p = cli("show", a["call_id"])
        check(p.returncode == 0 and json.loads(p.stdout)["arguments"]["amount"] == 100, p.stdout + p.stderr)
        p = cli("approve", a["call_id"], "--as", "mallory")  # not the token's approver
        check(p.returncode == 1 and env.executions(a["call_id"]) == 0, p.stdout + p.stderr)
        p = subprocess.run([harness.GATEHOUSE, "approvals", "list", "--url", url, "--token-env", "WRONG"],
                           capture_output=True, text=True, timeout=WAIT_S,
                           env=dict(os.environ, WRONG="nope-nope-nope-nope"))
        check(p.returncode == 1 and "unauthorized" in p.stderr, p.stderr)
        p = cli("approve", a["call_id"], "--reason", "checked the amount")  # recorded as alice
        check(p.returncode == 0 and json.loads(p.stdout).get("approver") in (None, "alice"),
              p.stdout + p.stderr)
        check(final(gw, a["call_id"])["status"] == "succeeded", "not run")
        p = cli("deny", a["call_id"], "--as", "alice")
        check(p.returncode == 1 and "already_decided" in p.stderr, p.stderr)
        check(env.executions(a["call_id"]) == 1, "executions")
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()


def test_policy_webhook_overrides_the_default():
    default, own = Receiver().start(), Receiver().start()
    env = Env(default.port)
    try:
        text = POLICY.format(name="ledger_own", tool=TOOL, timeout="1h", ledger=env.ledger, extra_env="",
                             wall="10s")
        text = text.replace("  timeout: 1h\n", "  timeout: 1h\n  webhook: http://127.0.0.1:%d/own\n" % own.port)
        harness.write_policy(env.policies, "ledger_own", text)
        gw = env.start()
        a = hold(gw, tool="ledger_own")
        _, _, p = own.wait_for(a["call_id"])
        check(p["tool"] == "ledger_own", p)
        b = hold(gw)  # the default endpoint still serves the others
        default.wait_for(b["call_id"])
        check(all(x[2]["call_id"] != a["call_id"] for x in default.accepted), "sent to the default too")
        env.stop_and_verify()
    finally:
        default.stop()
        own.stop()
        env.close()


def make_pki(d):
    """With the openssl command: a CA the gateway trusts (ca.pem), one it does not (rogue-ca),
    and receiver certificates for localhost (from each) and for another name."""
    check(shutil.which("openssl"), "no openssl command (scripts/install-deps.sh installs it)")

    def openssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True, timeout=WAIT_S)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                "-subj", "/CN=gatehouse test " + ca, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign")
    for name, ca, san in (("localhost", "ca", "DNS:localhost"), ("wrong-name", "ca", "DNS:wrong.example"),
                          ("rogue", "rogue-ca", "DNS:localhost")):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % san)
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-CAcreateserial", "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem")
    return d


def test_https_webhook_verifies_the_receiver():
    """https:// deliveries go only to a receiver whose certificate chains to a trusted CA and
    names the URL's host; refused handshakes are failed attempts, retried as any other."""
    pki = make_pki(tempfile.mkdtemp(prefix="gh-pki-"))
    rec = Receiver(pki=pki).use_cert("wrong-name").start()
    # The system's CAs plus the test CA, from approval.webhook_ca_file.
    env = Env(rec.port, webhook_url="https://localhost:%d/hook" % rec.port,
              extra_config="  webhook_ca_file: %s\n" % os.path.join(pki, "ca.pem"))
    try:
        gw = env.start()
        # A certificate for another name: refused at the handshake, recorded, retried.
        a = hold(gw)
        wait_until(lambda: webhook_state(gw, a["call_id"])["attempts"] >= 2, "two refused attempts")
        wait_until(lambda: "certificate not accepted: hostname mismatch" in gw.read_log(),
                   "the hostname mismatch in the gateway's log")
        rec.wait_handshake_failures(2)
        # A certificate from a CA the gateway does not trust: refused the same way.
        rec.use_cert("rogue")
        b = hold(gw, amount=200)
        wait_until(lambda: webhook_state(gw, b["call_id"])["attempts"] >= 1, "a refused attempt")
        wait_until(lambda: "certificate not accepted: unable to get local issuer certificate" in gw.read_log(),
                   "the untrusted CA in the gateway's log")
        with rec.cond:
            check(not rec.accepted and not rec.rejected, "a request reached an unverified receiver")
        for call in (a, b):
            check(not webhook_state(gw, call["call_id"])["delivered"], "delivered to an unverified receiver")
        # The right certificate: delivered over TLS, and its token decides the call.
        rec.use_cert("localhost")
        c = hold(gw, amount=300)
        _, _, p = rec.wait_for(c["call_id"])
        wait_delivered(gw, c["call_id"])
        r = decide(gw, c["call_id"], p["decision_token"], args_sha256=c["args_sha256"], approver="receiver")
        check(r.status == 200, r.body)
        check(final(gw, c["call_id"])["status"] == "succeeded", "not run")
        check(env.executions(c["call_id"]) == 1, "executions")
        # The refused deliveries were retried: they arrive now that the receiver is verified.
        for call in (a, b):
            rec.wait_for(call["call_id"])
            wh = wait_delivered(gw, call["call_id"])
            check(wh["attempts"] >= 2, wh)
            check(env.events(call["call_id"]).count("webhook.sent") == 1, env.events(call["call_id"]))
        env.stop_and_verify()
    finally:
        rec.stop()
        env.close()
        shutil.rmtree(pki, ignore_errors=True)


def test_config_errors_stop_the_gateway_with_line_and_column():
    env = Env(harness.free_port())
    try:
        cases = [
            ("approval:\n  webhook_url: ftp://127.0.0.1:9/h\n  webhook_secret: %s\n" % SECRET,
             "2:16: 'approval.webhook_url' must be an https:// or http://"),
            ("approval:\n  approvers:\n    alice: %s\n  aprovers: {}\n" % ALICE, "4:3: unknown key 'approval.aprovers'"),
            ("approval:\n  webhook_url: http://127.0.0.1:9/h\n", "needs a signing secret"),
        ]
        for text, want in cases:
            with open(env.config, "w") as f:
                f.write(text)
            os.chmod(env.config, 0o600)
            p = subprocess.run([harness.GATEHOUSE, "serve", "--listen", "127.0.0.1:%d" % harness.free_port(),
                                "--policies", env.policies, "--state-dir", env.state, "--config", env.config],
                               capture_output=True, text=True, timeout=WAIT_S)
            check(p.returncode != 0 and want in p.stderr, "%r: rc %d, %s" % (want, p.returncode, p.stderr))
    finally:
        env.close()


def main():
    if not harness.GATEHOUSE or not os.path.exists(harness.GATEHOUSE):
        harness.skip("GATEHOUSE is not set")
    if not os.path.exists(TOOL):
        harness.skip("the ledger tool is not built: " + TOOL)
    harness.run_functions([v for k, v in sorted(globals().items()) if k.startswith("test_")])


if __name__ == "__main__":
    main()
