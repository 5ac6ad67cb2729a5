"""Several gateways on one PostgreSQL (issue 15), against a real server.

A throwaway cluster of Debian's PostgreSQL is started here (initdb into a temporary directory,
pg_ctl on a Unix socket in it, password authentication), and real gateways share it, each with
its own state directory and audit log. Side effects are counted in the ledger tool's own file,
which every gateway's runs append to: one line per execution, whichever gateway ran it.
"""
import glob
import inspect
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_approval  # noqa: E402  (its independent Standard Webhooks receiver)
import test_audit_cli  # noqa: E402  (live_records, rehash: damaging a log as an attacker would)

ALICE = "3f9c0c6b5e2d4a71-alice-token"
ECHO = os.path.join(harness.BUILD_POLICIES, "tools", "echo")
PGPASS = "pg-test-Secret-7"
WAIT_S = 90  # upper bound for anything that should happen "soon"; never a performance check
TOOL = os.path.join(harness.BUILD_POLICIES, "tools", "ledger")

POLICY = """name: {name}
description: ledger for tests
command: ["{tool}"]
isolation: process
blast_radius: high
reversible: false
approval:
  required: true
  timeout: 1h
env:
  LEDGER_DIR: {ledger}
{extra_env}limits:
  wall_timeout: 20m
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
ECHO_POLICY = """name: echo
description: echo for tests
command: ["{tool}"]
isolation: process
blast_radius: low
reversible: true
limits:
  wall_timeout: 30s
  memory_mb: 64
  pids: 8
arguments:
  type: object
  properties:
    text: {{type: string, maxLength: 64}}
  required: [text]
  additionalProperties: false
"""


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def pg_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def ensure_postgresql():
    if pg_bin():
        return pg_bin()
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if not pg_bin():
        harness.skip("PostgreSQL cannot be installed here (apt-get install postgresql failed)")
    return pg_bin()


class Cluster:
    """A throwaway PostgreSQL cluster owned by the postgres user, on a socket in its own dir."""

    def __init__(self):
        self.bin = ensure_postgresql()
        try:
            self.user = pwd.getpwnam("postgres")
        except KeyError:
            harness.skip("no postgres user (the postgresql package is not set up)")
        if os.geteuid() != 0:
            harness.skip("the test cluster is started as the postgres user: needs root")
        self.root = tempfile.mkdtemp(prefix="gh-pg-")
        os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.port = harness.free_port()
        self.data = os.path.join(self.root, "data")
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as f:
            f.write(PGPASS + "\n")
        os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self.as_postgres([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                          "--auth=scram-sha-256", "--pwfile=" + pwfile, "-E", "UTF8", "--no-sync"])
        self.start()

    def as_postgres(self, argv, check_rc=True):
        p = subprocess.run(["runuser", "-u", "postgres", "--"] + argv, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, cwd=self.root, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                         "PGPASSWORD": PGPASS})
        if check_rc and p.returncode != 0:
            raise RuntimeError("%s: %s" % (argv[0], p.stdout.decode(errors="replace")))
        return p

    def start(self):
        self.as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w", "-l",
                          os.path.join(self.root, "server.log"), "-o",
                          "-k %s -p %d -c listen_addresses='' -c fsync=off" % (self.root, self.port),
                          "start"])

    def stop(self):
        self.as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate",
                          "stop"], check_rc=False)

    def uri(self, db):
        return "postgresql://postgres@/%s?host=%s&port=%d" % (db, self.root, self.port)

    def sql(self, db, statement):
        p = self.as_postgres([os.path.join(self.bin, "psql"), "-X", "-A", "-t", "-q", "-v",
                              "ON_ERROR_STOP=1", "-h", self.root, "-p", str(self.port), "-d", db,
                              "-c", statement])
        return p.stdout.decode().strip()

    def new_db(self, name):
        self.sql("postgres", "CREATE DATABASE %s" % name)
        return self.uri(name)

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Env:
    """Policies, a ledger, and gateways sharing one database (each its own state dir)."""

    def __init__(self, cluster, db):
        self.cluster = cluster
        self.db = db
        self.uri = cluster.new_db(db)
        self.root = tempfile.mkdtemp(prefix="gh-pgenv-")
        os.chmod(self.root, 0o755)  # the tool runs as nobody and must reach the ledger
        self.ledger = os.path.join(self.root, "ledger")
        os.mkdir(self.ledger)
        os.chmod(self.ledger, 0o777)
        self.policies = os.path.join(self.root, "policies")
        for name, delay in (("ledger", None), ("ledger_15s", "15000"), ("ledger_slow", "600000")):
            extra = '  LEDGER_DELAY_MS: "%s"\n' % delay if delay else ""
            harness.write_policy(self.policies, name, POLICY.format(
                name=name, tool=TOOL, ledger=self.ledger, extra_env=extra))
        harness.write_policy(self.policies, "echo", ECHO_POLICY.format(tool=ECHO))
        # A direct call (no approval) that writes its ledger line and then runs for 10 minutes.
        harness.write_policy(self.policies, "slow_direct", POLICY.format(
            name="slow_direct", tool=TOOL, ledger=self.ledger,
            extra_env='  LEDGER_DELAY_MS: "600000"\n').replace(
            "reversible: false\napproval:\n  required: true\n  timeout: 1h\n", "reversible: true\n"))
        self.gws = {}
        self.webhook_port = None
        self.extra_config = ""  # appended to every gateway's config
        self.webhook_format = None

    def config(self, name, database=True):
        """Gateway A takes the password from PGPASSWORD, the others from password_env."""
        path = os.path.join(self.root, name + ".yaml")
        db = ("" if not database else "database: %s\n" % self.uri if name == "a" else
              "database:\n  url: %s\n  password_env: GATE_TEST_DB_PASSWORD\n" % self.uri)
        hook = ("  webhook_url: http://127.0.0.1:%d/hook\n  webhook_secret_env: TEST_WEBHOOK_SECRET\n"
                % self.webhook_port if self.webhook_port else "")
        if self.webhook_format:
            hook += "  webhook_format: %s\n" % self.webhook_format
        with open(path, "w") as f:
            f.write(db + "approval:\n" + hook + "  approvers:\n    alice: %s\n" % ALICE
                    + self.extra_config)
        os.chmod(path, 0o600)  # a literal approver token
        return path

    def gateway(self, name):
        state = os.path.join(self.root, "state-" + name)
        os.makedirs(state, exist_ok=True)
        env = {"PGPASSWORD": PGPASS} if name == "a" else {"GATE_TEST_DB_PASSWORD": PGPASS}
        env["TEST_WEBHOOK_SECRET"] = test_approval.SECRET
        # Each gateway gets tool uids of its own from the harness: two gateways handing out the
        # same uids would let their calls meet.
        gw = harness.Gateway(self.policies, state_dir=state,
                             extra_args=["--config", self.config(name)], env=env)
        self.gws[name] = gw
        return gw

    def start_together(self, names):
        """Start gateways at the same moment (their migrations race on an empty database)."""
        gws = [self.gateway(n) for n in names]
        errors = []

        def start(gw):
            try:
                gw.start(timeout=WAIT_S)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=start, args=(gw,)) for gw in gws]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, "start: %r" % errors)
        return gws

    def executions(self, call_id):
        path = os.path.join(self.ledger, "ledger.jsonl")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return sum(1 for line in f if line.strip() and json.loads(line)["call_id"] == call_id)

    def events(self, name, call_id):
        return [r["event"] for r in harness.audit_records(self.gws[name].state_dir)
                if r.get("call_id") == call_id]

    def close(self):
        for gw in self.gws.values():
            if gw.proc and gw.proc.poll() is None:
                gw.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def hold(gw, tool="ledger", amount=100):
    r = gw.call(tool, {"account": "acme", "amount": amount})
    check(r.status == 202, "hold: %d %s" % (r.status, r.body))
    return r.json()


def decide(gw, held, decision="approve"):
    body = {"decision": decision, "approver": "alice", "args_sha256": held["args_sha256"]}
    return gw.request("POST", "/v1/approvals/" + held["call_id"], body,
                      headers={"authorization": "Bearer " + ALICE})


def status(gw, call_id):
    r = gw.request("GET", "/v1/calls/" + call_id)
    check(r.status == 200, "GET %s: %d %s" % (call_id, r.status, r.body))
    return r.json()["status"]


NOT_FINAL = ("pending_approval", "approved", "running")


def wait_final(gw, call_id):
    got = []
    ok = harness.wait_until(lambda: got.append(status(gw, call_id)) or got[-1] not in NOT_FINAL,
                            WAIT_S)
    check(ok, "%s: still %s" % (call_id, got[-1:]))
    return got[-1]


def wait_status(gw, call_id, want):
    got = []
    ok = harness.wait_until(lambda: got.append(status(gw, call_id)) or got[-1] in want, WAIT_S)
    check(ok, "%s: status %s, want %s; the gateway's log ends:\n%s" % (
        call_id, got[-1:], want, "" if ok else gw.read_log()[-4000:]))
    return got[-1]


def stop_clean(env, name):
    gw = env.gws[name]
    rc = gw.stop()
    check(rc == 0, "gateway %s exited %r:\n%s" % (name, rc, gw.read_log()[-3000:]))
    rc, out = harness.verify_audit(gw.state_dir)
    check(rc == 0, "audit verify (%s): %s" % (name, out))


# ---- tests ----------------------------------------------------------------------------------

def test_migrations_from_empty_racing_and_idempotent(cluster):
    uri = cluster.new_db("mig")
    run = lambda *a: subprocess.run([harness.GATEHOUSE, "db", "migrate"] + list(a),  # noqa: E731
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env={"PGPASSWORD": PGPASS, "PATH": "/usr/bin:/bin"})
    p = run("--check", uri)
    check(p.returncode == 1 and b"BEHIND" in p.stdout, "check on empty: %r" % p)
    check(cluster.sql("mig", "SELECT to_regclass('calls') IS NULL") == "t", "--check changed the db")
    procs = [subprocess.Popen([harness.GATEHOUSE, "db", "migrate", uri], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={"PGPASSWORD": PGPASS})
             for _ in range(4)]
    outs = [(pr.wait(), pr.stdout.read()) for pr in procs]
    check(all(rc == 0 for rc, _ in outs), "racing migrations: %r" % outs)
    check(run("--check", uri).returncode == 0, "not current after migrate")
    check(run(uri).returncode == 0, "re-run not idempotent")
    check(cluster.sql("mig", "SELECT count(*) = count(DISTINCT version) AND count(*) > 0"
                             " FROM schema_migrations") == "t", "a migration recorded twice")
    p = run("--check", "postgresql://postgres@/mig?host=/nonexistent&port=1")
    check(p.returncode == 2 and b"connect" in p.stdout, "unreachable: %r" % p)


def test_hold_on_a_approve_on_b_runs_once(cluster):
    env = Env(cluster, "holdab")
    try:
        a, b = env.start_together(["a", "b"])
        held = hold(a)
        cid = held["call_id"]
        check(status(b, cid) == "pending_approval", "B does not see A's hold")
        r = b.request("GET", "/v1/approvals?status=pending", headers={"authorization": "Bearer " + ALICE})
        check(r.status == 200 and cid in [x["call_id"] for x in r.json()["approvals"]], r.body)
        # A long poll on A is woken by what B does: it answers long before its own 100 s
        # (the client gives up at 90 s, so a poll that is not woken fails the test).
        polled = []
        poller = threading.Thread(target=lambda: polled.append(
            a.request("GET", "/v1/calls/%s?wait=100s" % cid, timeout=90)))
        poller.start()
        r = decide(b, held)
        check(r.status == 200, "approve on B: %d %s" % (r.status, r.body))
        check(wait_final(b, cid) == "succeeded", "not succeeded")
        check(status(a, cid) == status(b, cid), "A and B disagree")
        poller.join()
        check(polled and polled[0].json()["status"] == "succeeded",
              "A's long poll: %s" % (polled[0].body if polled else "failed"))
        check(decide(a, held).status == 409, "decided twice")
        check(env.executions(cid) == 1, "executions: %d" % env.executions(cid))
        check(env.events("a", cid).count("call.held") == 1, env.events("a", cid))
        check(env.events("b", cid).count("call.started") == 1, env.events("b", cid))
        check("call.started" not in env.events("a", cid), "A ran it too")
        stop_clean(env, "a")
        stop_clean(env, "b")
    finally:
        env.close()


def test_concurrent_approvals_across_gateways_exactly_once(cluster):
    env = Env(cluster, "conc")
    calls, per_call = 25, 8  # 200 approvals in flight, spread over both gateways
    try:
        gws = env.start_together(["a", "b"])
        held = [hold(gws[i % 2]) for i in range(calls)]
        results = {h["call_id"]: [] for h in held}
        lock = threading.Lock()
        go = threading.Event()

        def approve(gw, h):
            go.wait()
            r = decide(gw, h)
            with lock:
                results[h["call_id"]].append(r.status)
        threads = [threading.Thread(target=approve, args=(gws[k % 2], h))
                   for h in held for k in range(per_call)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join()
        for h in held:
            cid = h["call_id"]
            st = sorted(results[cid])
            check(st == [200] + [409] * (per_call - 1), "%s: statuses %r" % (cid, st))
            st = wait_final(gws[0], cid)
            check(st == "succeeded", "%s ended %s: %s" % (cid, st, gws[0].request("GET", "/v1/calls/" + cid).body))
            check(env.executions(cid) == 1, "%s ran %d times" % (cid, env.executions(cid)))
            starts = env.events("a", cid).count("call.started") + env.events("b", cid).count("call.started")
            check(starts == 1, "%s started %d times" % (cid, starts))
        stop_clean(env, "a")
        stop_clean(env, "b")
    finally:
        env.close()


def test_long_run_keeps_its_lease(cluster):
    """A run longer than the lease is not taken for dead while its gateway lives."""
    env = Env(cluster, "lease")
    try:
        a, b = env.start_together(["a", "b"])
        held = hold(a, tool="ledger_15s")
        check(decide(a, held).status == 200, "approve")
        cid = held["call_id"]
        final = wait_final(b, cid)
        check(final == "succeeded", "a live run ended %s (interrupted: its lease was lost)" % final)
        check(env.executions(cid) == 1, "executions")
        stop_clean(env, "a")
        stop_clean(env, "b")
    finally:
        env.close()


def test_gateway_killed_mid_run_is_interrupted_by_another_never_rerun(cluster):
    env = Env(cluster, "killed")
    try:
        a, b = env.start_together(["a", "b"])
        held = hold(b, tool="ledger_slow")
        cid = held["call_id"]
        check(decide(a, held).status == 200, "approve on A")
        # The tool has made its irreversible write and is still running, on A.
        check(harness.wait_until(lambda: env.executions(cid) == 1, WAIT_S), "the ledger write")
        check(status(b, cid) == "running", "not running")
        a.kill9()
        check(wait_status(b, cid, ["interrupted"]) == "interrupted", "not interrupted")
        check(env.events("b", cid).count("call.interrupted") == 1, env.events("b", cid))
        # A restarted A (a new node) does not run it again, nor can it be decided again.
        a = env.gateway("a")
        a.start(timeout=WAIT_S)
        check(status(a, cid) == "interrupted", "state changed")
        check(decide(a, held).status == 409, "decided again")
        check(env.executions(cid) == 1, "re-run: %d" % env.executions(cid))
        check("call.interrupted" not in env.events("a", cid), "interrupted twice")
        stop_clean(env, "a")
        stop_clean(env, "b")
    finally:
        env.close()


def test_webhook_lease_of_a_killed_gateway_is_taken_over(cluster):
    env = Env(cluster, "hook")
    env.webhook_port = harness.free_port()  # nobody listens yet: A's deliveries fail
    rec = None
    try:
        a, b = env.start_together(["a", "b"])
        held = hold(a)
        cid = held["call_id"]
        check(harness.wait_until(
            lambda: cluster.sql("hook", "SELECT webhook_attempts FROM calls WHERE call_id='%s'" % cid)
            not in ("", "0"), WAIT_S), "A never tried to deliver")
        a.kill9()
        rec = test_approval.Receiver(port=env.webhook_port).start()
        _, _, payload = rec.wait_for(cid, timeout=WAIT_S)  # signature verified by the receiver
        check(payload["call_id"] == cid and payload["args_sha256"] == held["args_sha256"], payload)
        check(harness.wait_until(lambda: "webhook.sent" in env.events("b", cid), WAIT_S),
              "B did not record the delivery: %s" % env.events("b", cid))
        check("webhook.sent" not in env.events("a", cid), "A delivered too")
        # The token of B's delivery decides the call, through either gateway.
        r = b.request("POST", "/v1/approvals/" + cid,
                      {"decision": "approve", "args_sha256": held["args_sha256"]},
                      headers={"authorization": "Bearer " + payload["decision_token"]})
        check(r.status == 200, "decide with the adopted delivery's token: %d %s" % (r.status, r.body))
        check(wait_final(b, cid) == "succeeded", "not run")
        check(env.executions(cid) == 1, "executions")
        stop_clean(env, "b")
    finally:
        if rec:
            rec.stop()
        env.close()


def test_chat_followup_from_another_gateway_within_the_webhook_lease(cluster):
    """Held on A (A delivers the Slack message and keeps its webhook lease for a while),
    approved on B at once: B posts the outcome follow-up; it was dropped for want of the lease."""
    env = Env(cluster, "followup")
    env.webhook_port = harness.free_port()
    env.webhook_format = "slack"
    rec = test_approval.Receiver(port=env.webhook_port).start()
    try:
        a, b = env.start_together(["a", "b"])
        held = hold(a)
        cid = held["call_id"].encode()

        def bodies():
            with rec.cond:
                return [body for _, body, _ in rec.accepted if cid in body]
        check(harness.wait_until(lambda: len(bodies()) == 1, WAIT_S), "no chat message")
        check(decide(b, held).status == 200, "approve on B")
        check(harness.wait_until(lambda: any(b"Approved:" in x for x in bodies()), WAIT_S),
              "no follow-up: %r" % bodies())
        check(sum(1 for x in bodies() if b"Approved:" in x) == 1, "follow-up twice: %r" % bodies())
        check(wait_final(a, held["call_id"]) == "succeeded", "not run")
        stop_clean(env, "a")
        stop_clean(env, "b")
    finally:
        rec.stop()
        env.close()


class StallingReceiver:
    """A chat endpoint that answers 204 to signed messages, except that while `stalling` is
    set it never answers an outcome follow-up (it holds the connection until released)."""

    def __init__(self, port):
        import http.server
        rec = self
        self.cond = threading.Condition()
        self.accepted = []  # bodies answered 204
        self.stalled = 0
        self.stalling = True
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, _ = test_approval.verify(test_approval.SECRET, headers, body)
                with rec.cond:
                    stall = rec.stalling and b"Approved:" in body
                    if stall:
                        rec.stalled += 1
                    elif status == 204:
                        rec.accepted.append(body)
                    rec.cond.notify_all()
                if stall:
                    rec.release.wait(WAIT_S)
                    return  # no answer: the sender is dead by now
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a dead sender's connection

        self.server = Server(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, needle):
        with self.cond:
            return [b for b in self.accepted if needle in b]

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_chat_followup_of_a_killed_deciding_gateway_sent_by_another(cluster):
    """Held on B (B posts the Slack message), approved on A; A's follow-up is stalled by the
    receiver and A is killed -9 before it got an answer: B adopts the due follow-up once A's
    lease runs out and posts it, once. Before, the follow-up lived only in A's memory."""
    env = Env(cluster, "followkill")
    env.webhook_port = harness.free_port()
    env.webhook_format = "slack"
    rec = StallingReceiver(env.webhook_port)
    try:
        a, b = env.start_together(["a", "b"])
        held = hold(b)
        cid = held["call_id"]
        check(harness.wait_until(lambda: rec.bodies(cid.encode()), WAIT_S), "no chat message")
        check(decide(a, held).status == 200, "approve on A")
        check(wait_final(b, cid) == "succeeded", "not run")
        check(harness.wait_until(lambda: rec.stalled >= 1, WAIT_S), "A sent no follow-up")
        a.kill9()  # while its follow-up waits for an answer it will never get
        with rec.cond:
            rec.stalling = False
        rec.release.set()
        followups = lambda: [x for x in rec.bodies(b"Approved:") if cid.encode() in x]  # noqa: E731
        check(harness.wait_until(followups, WAIT_S), "nobody sent the follow-up")
        due = "SELECT followup_node IS NULL FROM calls WHERE call_id = '%s'" % cid
        check(harness.wait_until(lambda: cluster.sql("followkill", due) == "t", WAIT_S),
              "the follow-up is still due")
        check(len(followups()) == 1, "follow-ups answered: %r" % followups())
        check("webhook.followup_adopted" in b.read_log(), "B did not adopt it")
        stop_clean(env, "b")
    finally:
        rec.stop()
        env.close()


def test_database_down_503_direct_calls_go_on_nothing_lost(cluster):
    env = Env(cluster, "down")
    try:
        (a,) = env.start_together(["a"])
        before = hold(a)["call_id"]
        check(a.request("GET", "/healthz").json().get("approval_store") == "postgresql", "healthz")
        cluster.stop()
        try:
            check(harness.wait_until(lambda: a.request("GET", "/healthz").json()["status"] == "degraded",
                                     WAIT_S), "/healthz does not say the database is down")
            h = a.request("GET", "/healthz")
            check(h.status == 200 and h.json()["database"].startswith("unavailable"), h.body)
            r = a.call("ledger", {"account": "acme", "amount": 1})
            check(r.status == 503 and r.json()["error"]["code"] == "database_unavailable",
                  "hold with the database down: %d %s" % (r.status, r.body))
            r = a.call("echo", {"text": "hi"})
            check(r.status == 200, "a direct call with the database down: %d %s" % (r.status, r.body))
            # The held call cannot be read, which is not the same as not existing (a 404 here
            # told agents their held call was gone).
            for path in ("/v1/calls/" + before, "/v1/calls/" + before + "?wait=2s"):
                r = a.request("GET", path)
                check(r.status == 503 and r.json()["error"]["code"] == "database_unavailable",
                      "GET %s with the database down: %d %s" % (path, r.status, r.body))
        finally:
            cluster.start()
        # Unknown calls read back at once over the pool's dead connections (each read retried
        # on a new one): 404, not a 503 left behind by the retried read.
        got = []
        readers = [threading.Thread(target=lambda i=i: got.append(
            a.request("GET", "/v1/calls/c_%032d" % i).status)) for i in range(8)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        check(got == [404] * 8, "unknown calls after the database came back: %r" % got)
        check(status(a, before) == "pending_approval", "an acknowledged hold was lost")
        check(harness.wait_until(lambda: a.request("GET", "/healthz").json()["status"] == "ok",
                                 WAIT_S), "/healthz does not say the database is back")
        after = hold(a)  # reconnected
        check(decide(a, after).status == 200, "decide after the database came back")
        check(wait_final(a, after["call_id"]) == "succeeded", "not run after reconnect")
        stop_clean(env, "a")
    finally:
        env.close()


def test_mcp_wait_sees_a_decision_made_elsewhere_while_its_gateway_lost_the_database(cluster):
    """An MCP client waits on A (no event stream: no heartbeat, no timeout) for its held call;
    A alone loses the database (its role may not log in) while B denies the call; A gets the
    database back. The client is answered: a change A could not hear is looked at again once A
    listens again. Before, its wait never ended (the NOTIFY went to no one)."""
    cluster.sql("postgres", "CREATE ROLE gw_lost SUPERUSER LOGIN PASSWORD '%s'" % PGPASS)
    env = Env(cluster, "mcplost")
    config = env.config

    def config_a_as_gw_lost(name, database=True):
        path = config(name, database)
        if name == "a":
            with open(path) as f:
                text = f.read().replace("postgresql://postgres@", "postgresql://gw_lost@")
            with open(path, "w") as f:
                f.write(text)
        return path
    env.config = config_a_as_gw_lost
    try:
        a, b = env.start_together(["a", "b"])
        r = a.request("POST", "/mcp", {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                       "params": {"protocolVersion": "2025-06-18"}},
                      headers={"Accept": "application/json, text/event-stream"})
        check(r.status == 200, "initialize: %d %s" % (r.status, r.body))
        answers = []
        waiter = threading.Thread(target=lambda: answers.append(a.request(
            "POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                             "params": {"name": "ledger", "arguments": {"account": "a", "amount": 1}}},
            headers={"Accept": "application/json", "Mcp-Session-Id": r.headers["mcp-session-id"]},
            timeout=WAIT_S)))
        waiter.start()
        pending = lambda: b.request("GET", "/v1/approvals?status=pending",  # noqa: E731
                                    headers={"authorization": "Bearer " + ALICE}).json()["approvals"]
        check(harness.wait_until(pending, WAIT_S), "the MCP call was not held")
        cid = pending()[0]["call_id"]
        rec = b.request("GET", "/v1/calls/" + cid, headers={"authorization": "Bearer " + ALICE}).json()
        held = {"call_id": cid, "args_sha256": rec["approval"]["args_sha256"]}
        cluster.sql("postgres", "ALTER ROLE gw_lost NOLOGIN")
        cluster.sql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE usename = 'gw_lost'")
        try:
            check(harness.wait_until(lambda: a.request("GET", "/healthz").json()["status"] == "degraded",
                                     WAIT_S), "A did not lose the database")
            check(decide(b, held, "deny").status == 200, "deny on B")
        finally:
            cluster.sql("postgres", "ALTER ROLE gw_lost LOGIN")
        waiter.join(WAIT_S + 5)
        check(answers and answers[0].status == 200, "the MCP client was not answered: %r" % answers)
        result = answers[0].json()["result"]
        check(result["isError"] and result["_meta"]["gatehouse/status"] == "denied", answers[0].body)
        stop_clean(env, "a")
    finally:
        env.close()


def test_three_gateways_hold_on_a_approve_on_c_runs_once(cluster):
    env = Env(cluster, "three")
    try:
        a, b, c = env.start_together(["a", "b", "c"])
        held = hold(a)
        cid = held["call_id"]
        check(status(c, cid) == "pending_approval", "C does not see A's hold")
        check(decide(c, held).status == 200, "approve on C")
        check(wait_final(b, cid) == "succeeded", "not succeeded (seen from B)")
        check(decide(b, held).status == 409 and decide(a, held).status == 409, "decided twice")
        check(env.executions(cid) == 1, "executions: %d" % env.executions(cid))
        starts = {n: env.events(n, cid).count("call.started") for n in "abc"}
        check(starts == {"a": 0, "b": 0, "c": 1}, "started: %r" % starts)
        for n in "abc":
            stop_clean(env, n)
    finally:
        env.close()


def verify_anchored(state_dir, uri, *extra):
    p = subprocess.run([harness.GATEHOUSE, "audit", "verify", os.path.join(state_dir, "audit"),
                        "--anchors", uri] + list(extra), capture_output=True, text=True,
                       env={"PGPASSWORD": PGPASS, "PATH": "/usr/bin:/bin"})
    return p.returncode, p.stdout + p.stderr


def test_anchored_verify_finds_cut_and_rewritten_tails(cluster):
    env = Env(cluster, "anchor")
    try:
        (a,) = env.start_together(["a"])
        held = hold(a)
        for i in range(3):
            check(a.call("echo", {"text": "n%d" % i}).status == 200, "echo")
        check(decide(a, held).status == 200, "approve")
        check(wait_final(a, held["call_id"]) == "succeeded", "not run")
        stop_clean(env, "a")  # the last head (gateway.stopped) is anchored on the way out
        recs = harness.audit_records(a.state_dir)
        node = recs[-1]["node"]
        check(all(r.get("node") == node for r in recs), "a record without the node")
        top = cluster.sql("anchor", "SELECT max(seq) || ' ' || count(*) FROM audit_anchors"
                                    " WHERE node = '%s'" % node).split()
        check(int(top[0]) == recs[-1]["seq"] and int(top[1]) > 1, "anchors: %r" % top)
        rc, out = verify_anchored(a.state_dir, env.uri)
        check(rc == 0 and "anchored heads of node %s present" % node in out, out)

        def damaged(edit):
            d = tempfile.mkdtemp(prefix="gh-pgcut-", dir=env.root)
            shutil.copytree(os.path.join(a.state_dir, "audit"), os.path.join(d, "audit"))
            seg = os.path.join(d, "audit", sorted(os.listdir(os.path.join(d, "audit")))[-1])
            lines = test_audit_cli.live_records(seg)
            with open(seg, "wb") as f:
                f.write(b"".join(edit(lines)))
            check(harness.verify_audit(d)[0] == 0, "plain verify should pass: %s" % d)
            return verify_anchored(d, env.uri)

        rc, out = damaged(lambda lines: lines[:-3])
        check(rc == 4 and "NOT AS ANCHORED" in out and "cut off" in out, "cut: %d %s" % (rc, out))

        def rewrite(lines):
            i = max(k for k, line in enumerate(lines) if b'"exit_code":0' in line)
            lines[i] = lines[i].replace(b'"exit_code":0', b'"exit_code":1')
            return test_audit_cli.rehash(lines, i)
        rc, out = damaged(rewrite)
        check(rc == 4 and "rewritten after seq" in out, "rewritten: %d %s" % (rc, out))
        rc, out = verify_anchored(a.state_dir, "postgresql://postgres@/anchor?host=/nonexistent&port=1")
        check(rc == 2, "unreachable anchors: %d %s" % (rc, out))
    finally:
        env.close()


def test_prune_anchors_keeps_verify_sound(cluster):
    """`gatehouse db prune-anchors --keep-days 30` deletes anchors older than 30 days except
    each node's newest and the newest of each segment; anchors inside the window stay. After
    it, the anchored verify still passes on the intact log and still finds a cut tail."""
    env = Env(cluster, "prune")
    try:
        (a,) = env.start_together(["a"])
        for i in range(4):
            check(a.call("echo", {"text": "p%d" % i}).status == 200, "echo")
        stop_clean(env, "a")
        node = harness.audit_records(a.state_dir)[-1]["node"]
        q = lambda s: cluster.sql("prune", s)  # noqa: E731
        seqs = [int(x) for x in q("SELECT seq FROM audit_anchors WHERE node = '%s' ORDER BY seq"
                                  % node).split()]
        check(len(seqs) >= 3, "too few anchors to prune: %r" % seqs)
        # Every anchor but the newest two is 40 days old; another node has two segments' worth.
        q("UPDATE audit_anchors SET anchored_at = now() - interval '40 days'"
          " WHERE node = '%s' AND seq < %d" % (node, seqs[-2]))
        q("INSERT INTO audit_anchors (node, seq, segment, hash, anchored_at) SELECT 'old-node',"
          " s, CASE WHEN s <= 3 THEN 1 ELSE 2 END, repeat('0', 64), now() - interval '40 days'"
          " FROM generate_series(1, 5) s")
        p = subprocess.run([harness.GATEHOUSE, "db", "prune-anchors", "--keep-days", "30", env.uri],
                           capture_output=True, text=True,
                           env={"PGPASSWORD": PGPASS, "PATH": "/usr/bin:/bin"})
        deleted = len(seqs) - 2 + 3
        check(p.returncode == 0 and "OK: %d anchor(s)" % deleted in p.stdout,
              "prune: %d %s %s" % (p.returncode, p.stdout, p.stderr))
        left = q("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM audit_anchors WHERE node ="
                 " '%s'" % node)
        check(left == "%d,%d" % (seqs[-2], seqs[-1]), "kept of %s: %s" % (node, left))
        left = q("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM audit_anchors WHERE node ="
                 " 'old-node'")
        check(left == "3,5", "kept of old-node (each segment's newest): %s" % left)
        rc, out = verify_anchored(a.state_dir, env.uri)
        check(rc == 0, "anchored verify after pruning: %d %s" % (rc, out))
        d = tempfile.mkdtemp(prefix="gh-pgprune-", dir=env.root)
        shutil.copytree(os.path.join(a.state_dir, "audit"), os.path.join(d, "audit"))
        seg = os.path.join(d, "audit", sorted(os.listdir(os.path.join(d, "audit")))[-1])
        lines = test_audit_cli.live_records(seg)
        with open(seg, "wb") as f:
            f.write(b"".join(lines[:-1]))
        rc, out = verify_anchored(d, env.uri)
        check(rc == 4 and "cut off" in out, "a cut tail after pruning: %d %s" % (rc, out))
        p = subprocess.run([harness.GATEHOUSE, "db", "prune-anchors", "--keep-days", "x", env.uri],
                           capture_output=True, text=True)
        check(p.returncode == 2 and "usage" in p.stderr, "bad --keep-days: %r" % p)
    finally:
        env.close()


def test_database_restarted_under_load_nothing_acknowledged_lost(cluster):
    """Clients keep calling while PostgreSQL stops and starts again: holds get 503
    database_unavailable while it is down, direct calls keep working, holds work again after,
    and every 2xx a client got is in the store and the audit log. Anchors catch up."""
    env = Env(cluster, "load")
    got = []  # (kind, phase, status, body)
    lock = threading.Lock()
    stop = threading.Event()
    phase = ["up"]
    try:
        (a,) = env.start_together(["a"])

        def client(kind):
            while not stop.is_set():
                ph = phase[0]
                r = (a.call("ledger", {"account": "acme", "amount": 1}) if kind == "hold"
                     else a.call("echo", {"text": "x"}))
                with lock:
                    got.append((kind, ph, r.status, r.json() if r.body else {}))

        def seen(kind, ph, st):
            with lock:
                return sum(1 for g in got if g[0] == kind and g[1] == ph and g[2] == st)
        threads = [threading.Thread(target=client, args=(k,)) for k in ("hold", "hold", "direct", "direct")]
        for t in threads:
            t.start()
        check(harness.wait_until(lambda: seen("hold", "up", 202) >= 5, WAIT_S), "no holds before")
        cluster.stop()
        phase[0] = "down"
        try:
            check(harness.wait_until(lambda: seen("hold", "down", 503) >= 3, WAIT_S),
                  "holds are not refused with the database down")
            check(harness.wait_until(lambda: seen("direct", "down", 200) >= 5, WAIT_S),
                  "direct calls stopped with the database down")
            check(a.metric('gatehouse_audit_anchor_failures_total{target="database"}') > 0 or
                  harness.wait_until(lambda: a.metric(
                      'gatehouse_audit_anchor_failures_total{target="database"}') > 0, WAIT_S),
                  "anchor failures are not counted")
        finally:
            cluster.start()
        phase[0] = "again"
        check(harness.wait_until(lambda: seen("hold", "again", 202) >= 3, WAIT_S),
              "holds do not work again after the restart")
        stop.set()
        for t in threads:
            t.join()
        bad = [g for g in got if g[2] not in (200, 202) and not
               (g[2] == 503 and g[3].get("error", {}).get("code") == "database_unavailable")]
        check(not bad, "unexpected answers: %r" % bad[:5])
        check(not [g for g in got if g[0] == "direct" and g[2] != 200], "a direct call failed")
        audit = {}
        for r in harness.audit_records(a.state_dir):
            audit.setdefault(r.get("call_id"), []).append(r["event"])
        for kind, ph, st, body in got:
            if st == 202:
                cid = body["call_id"]
                check(status(a, cid) == "pending_approval", "acknowledged hold %s lost" % cid)
                check("call.held" in audit.get(cid, []), "hold %s not in the audit log" % cid)
            elif st == 200:
                check("call.finished" in audit.get(body["call_id"], []),
                      "direct call %s not in the audit log" % body["call_id"])
        n_ok = sum(1 for g in got if g[2] in (200, 202))
        # The anchors catch up with the log once the database is back.
        check(harness.wait_until(lambda: a.metric('gatehouse_audit_anchored_seq{target="database"}')
                                 >= a.metric("gatehouse_audit_last_seq"), WAIT_S), "anchors lag")
        print("     %d answers, %d acknowledged, %d refused with database_unavailable"
              % (len(got), n_ok, len(got) - n_ok), flush=True)
        stop_clean(env, "a")
        rc, out = verify_anchored(a.state_dir, env.uri)
        check(rc == 0, "anchored verify after the outage: %s" % out)
    finally:
        stop.set()
        env.close()


def test_agent_quotas_count_across_gateways(cluster):
    """max_concurrent 1 and rate 2/min for the (anonymous) agent, on two gateways: one running
    call on A takes the agent's only slot on B too; a gateway killed with -9 gives its slot
    back (the database drops its session locks); rate tokens are shared as well."""
    env = Env(cluster, "quota")
    env.extra_config = "defaults: {max_concurrent: 1}\n"
    try:
        a, b = env.start_together(["a", "b"])
        check(b.call("echo", {"text": "free"}).status == 200, "echo with the slot free")
        def slow_call():
            try:
                a.call("slow_direct", {"account": "q", "amount": 1})
            except OSError:
                pass  # A is killed while the call runs: no answer is expected
        slow = threading.Thread(target=slow_call)
        slow.start()
        check(harness.wait_until(lambda: os.path.exists(os.path.join(env.ledger, "ledger.jsonl")),
                                 WAIT_S), "the slow call does not run")
        for gw, name in ((b, "B"), (a, "A")):
            r = gw.call("echo", {"text": "busy"})
            check(r.status == 429 and r.json()["error"]["code"] == "too_many_calls" and
                  "max_concurrent" in r.json()["error"]["message"] and
                  r.headers.get("retry-after"), "%s with the slot taken: %d %s" % (name, r.status, r.body))
        a.kill9()  # its running call's slot dies with its database session
        slow.join()
        check(harness.wait_until(lambda: b.call("echo", {"text": "again"}).status == 200, WAIT_S),
              "the killed gateway's slot was never released")
        stop_clean(env, "b")
    finally:
        env.close()
    env = Env(cluster, "rate")
    env.extra_config = "defaults: {rate: 2}\n"
    try:
        a, b = env.start_together(["a", "b"])
        t0 = time.monotonic()
        answers = [gw.call("echo", {"text": "r"}) for gw in (a, b, a, b)]
        elapsed = time.monotonic() - t0
        ok = sum(1 for r in answers if r.status == 200)
        refused = [r for r in answers if r.status == 429 and "rate" in r.json()["error"]["message"]]
        # Two tokens for both gateways together, plus what refilled meanwhile (2 a minute);
        # counted per gateway, all four would pass.
        check(2 <= ok <= 2 + int(elapsed * 2 / 60),
              "%d calls passed in %.1fs: %r" % (ok, elapsed, [r.status for r in answers]))
        check(ok + len(refused) == 4, "other answers: %r" % [(r.status, r.body) for r in answers])
        stop_clean(env, "a")
        stop_clean(env, "b")
    finally:
        env.close()


def test_quota_slots_retaken_after_database_restart(cluster):
    """max_concurrent 2: two long calls run on A, PostgreSQL restarts (dropping every session
    lock), and a call on B right after it is back is still refused: A re-took its two slots
    (the locks are there again), and they are real ones, released when A is killed."""
    env = Env(cluster, "regrab")
    env.extra_config = "defaults: {max_concurrent: 2}\n"
    slots = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
             " AND granted")  # two-key advisory locks: the quota's slots
    try:
        a, b = env.start_together(["a", "b"])

        def slow_call(i):
            try:
                a.call("slow_direct", {"account": "s%d" % i, "amount": i})
            except OSError:
                pass  # A is killed while the call runs: no answer is expected
        slow = [threading.Thread(target=slow_call, args=(i,)) for i in range(2)]
        for t in slow:
            t.start()
        ledger = os.path.join(env.ledger, "ledger.jsonl")
        check(harness.wait_until(lambda: os.path.exists(ledger) and
                                 len(open(ledger).read().splitlines()) == 2, WAIT_S),
              "the two slow calls do not run")
        check(cluster.sql("regrab", slots) == "2", "slots before the restart")

        def refused(gw, name):
            r = gw.call("echo", {"text": "busy"})
            check(r.status == 429 and r.json()["error"]["code"] == "too_many_calls" and
                  "max_concurrent" in r.json()["error"]["message"],
                  "%s with both slots taken: %d %s" % (name, r.status, r.body))
        refused(b, "B before the restart")
        cluster.stop()
        cluster.start()
        check(cluster.sql("regrab", slots) in ("0", "1", "2"), "pg_locks")
        refused(b, "B right after the restart")  # would take a slot A's calls no longer held
        check(harness.wait_until(lambda: cluster.sql("regrab", slots) == "2", WAIT_S),
              "A's slots are not held again: %s" % cluster.sql("regrab", slots))
        refused(b, "B after A re-took its slots")
        refused(a, "A after it re-took its slots")
        a.kill9()  # its re-taken slots die with its session
        for t in slow:
            t.join()
        check(harness.wait_until(lambda: b.call("echo", {"text": "again"}).status == 200, WAIT_S),
              "the killed gateway's re-taken slots were never released")
        stop_clean(env, "b")
    finally:
        env.close()


def test_max_pending_atomic_across_gateways(cluster):
    """max_pending 3 for the (anonymous) agent and 24 holds released at once, half through each
    gateway, in three rounds: exactly 3 held each round and the rest 429 too_many_calls.
    Counted per gateway, or counted and inserted in two steps, more than 3 get through."""
    env = Env(cluster, "maxpend")
    env.extra_config = "defaults: {max_pending: 3}\n"
    try:
        gws = env.start_together(["a", "b"])
        for rnd in range(3):
            answers = []
            lock = threading.Lock()
            go = threading.Event()

            def one(gw, i):
                go.wait()
                r = gw.call("ledger", {"account": "r%d" % rnd, "amount": i})
                with lock:
                    answers.append((r.status, r.json()))
            threads = [threading.Thread(target=one, args=(gws[i % 2], i)) for i in range(24)]
            for t in threads:
                t.start()
            go.set()
            for t in threads:
                t.join()
            held = [body for st, body in answers if st == 202]
            refused = [body for st, body in answers if st == 429 and
                       body["error"]["code"] == "too_many_calls" and
                       "max_pending" in body["error"]["message"]]
            check(len(held) == 3 and len(refused) == 21,
                  "round %d: %d held, %d refused, others %r" % (
                      rnd, len(held), len(refused),
                      [a for a in answers if a[0] not in (202, 429)][:3]))
            pending = cluster.sql("maxpend", "SELECT count(*) FROM calls WHERE state ="
                                             " 'pending_approval'")
            check(pending == "3", "pending in the database: %s" % pending)
            for h in held:  # free the places for the next round
                check(decide(gws[0], h, "deny").status == 200, "deny")
        stop_clean(env, "a")
        stop_clean(env, "b")
    finally:
        env.close()


def test_sqlite_default_unchanged_without_database():
    """No database: key: the embedded store in the state directory, as before."""
    root = tempfile.mkdtemp(prefix="gh-pgnone-")
    try:
        harness.write_policy(os.path.join(root, "p"), "ledger", POLICY.format(
            name="ledger", tool=TOOL, ledger=root, extra_env=""))
        with harness.Gateway(os.path.join(root, "p")) as gw:
            hold(gw)
            check(os.path.exists(os.path.join(gw.state_dir, "approval.db")), "no approval.db")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    if not harness.GATEHOUSE or not os.path.exists(harness.GATEHOUSE):
        harness.skip("GATEHOUSE binary not built")
    cluster = Cluster()
    try:
        harness.run_functions([f for n, f in sorted(globals().items())
                               if n.startswith("test_") and inspect.isfunction(f)], cluster)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
