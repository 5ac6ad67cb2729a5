"""bench_pg: held calls through PostgreSQL against SQLite, and two gateways against one (issue 15).

Targets: a held call's hold + approve + run round trip through PostgreSQL at most 1.5x the
SQLite one, and 8 clients holding calls on two gateways at least 1.6x one gateway's hold rate.
Everything is measured in this one run, back to back and concurrently, on a throwaway
PostgreSQL cluster started here (as tests/integration/test_pg.py does). Only the ratios mean
something on a shared machine.

The hold rate is measured twice: with a new connection per request (the clients of the first
runs), and with keep-alive clients (one connection per client, reused, as agents' HTTP clients
do), which spares the gateway a connection set-up per request.

  GATEHOUSE=build/gateway/gatehouse GATE_BUILD_DIR=build python3 bench/pg/bench_pg.py [ROUNDS]
"""
import http.client
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import harness  # noqa: E402
import test_pg  # noqa: E402

CLIENTS = 8
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """CPU seconds (user + system) a process has used, 0 if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def postgres_pids(cluster):
    with open(os.path.join(cluster.data, "postmaster.pid")) as f:
        master = int(f.readline())
    pids = [master]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def machine_busy():
    """(busy, total) jiffies of the whole machine: every engineer's load included."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class CpuMeter:
    """Where the CPU went during a phase: gateways, PostgreSQL, this client, the machine."""

    def __init__(self, cluster, gws):
        self.cluster, self.gws = cluster, gws

    def sample(self):
        pg = sum(proc_cpu(p) for p in postgres_pids(self.cluster))
        gw = sum(proc_cpu(g.proc.pid) for g in self.gws)
        t = os.times()
        return time.monotonic(), gw, pg, t.user + t.system, machine_busy()

    def __enter__(self):
        self.t0 = self.sample()
        return self

    def __exit__(self, *exc):
        t1 = self.sample()
        wall = t1[0] - self.t0[0]
        busy = (t1[4][0] - self.t0[4][0]) / max(1, t1[4][1] - self.t0[4][1])
        self.text = ("cores busy over %.1fs: gateways %.2f, postgresql %.2f, clients %.2f; "
                     "machine %.0f%% busy (of %d cores, others' work included)"
                     % (wall, (t1[1] - self.t0[1]) / wall, (t1[2] - self.t0[2]) / wall,
                        (t1[3] - self.t0[3]) / wall, busy * 100, os.cpu_count()))


def round_trip(gw):
    t0 = time.monotonic()
    held = test_pg.hold(gw)
    r = test_pg.decide(gw, held)
    test_pg.check(r.status == 200, r.body)
    r = gw.request("GET", "/v1/calls/%s?wait=30s" % held["call_id"])
    test_pg.check(r.json()["status"] == "succeeded", r.body)
    return time.monotonic() - t0


def concurrent(fn, gws, per_client):
    """CLIENTS threads, client i on gws[i % len(gws)], each calling fn per_client times back
    to back; returns (calls per second, per-call latencies)."""
    lat, lock, go = [], threading.Lock(), threading.Event()

    def client(gw):
        go.wait()
        for _ in range(per_client):
            dt = fn(gw)
            with lock:
                lat.append(dt)
    threads = [threading.Thread(target=client, args=(gws[i % len(gws)],)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    go.set()
    for t in threads:
        t.join()
    return len(lat) / (time.monotonic() - t0), lat


def hold_only(gw):
    t0 = time.monotonic()
    test_pg.hold(gw)
    return time.monotonic() - t0


class KeepAlive:
    """One client's connection to one gateway, reused for every request."""
    BODY = json.dumps({"arguments": {"account": "acme", "amount": 100}}).encode()

    def __init__(self):
        self.conns = {}

    def __call__(self, gw):
        me = threading.get_ident()
        conn = self.conns.get((me, gw.port))
        if conn is None:
            conn = self.conns[(me, gw.port)] = http.client.HTTPConnection("127.0.0.1", gw.port,
                                                                          timeout=60)
        t0 = time.monotonic()
        conn.request("POST", "/v1/tools/ledger/calls", body=self.BODY,
                     headers={"content-type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        test_pg.check(r.status == 202, body)
        test_pg.check(r.getheader("connection", "").lower() != "close", "connection closed")
        return time.monotonic() - t0

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}


def hold_rates(cluster, a, b, fn, per):
    """Holds/s of CLIENTS clients on one gateway, on two, on one again; CPU use printed."""
    with CpuMeter(cluster, [a]) as m1:
        one, _ = concurrent(fn, [a], per)
    with CpuMeter(cluster, [a, b]) as m2:
        two, _ = concurrent(fn, [a, b], per)
    one_again, _ = concurrent(fn, [a], per)
    return one, two, one_again, m1, m2


def echo(gw):
    t0 = time.monotonic()
    r = gw.call("echo", {"text": "q"})
    test_pg.check(r.status == 200, r.body)
    return time.monotonic() - t0


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    cluster = test_pg.Cluster()
    pg = test_pg.Env(cluster, "bench")
    try:
        a, b = pg.start_together(["a", "b"])
        # The same, but every call counts its agent's quotas in the database (issue 15).
        pg.extra_config = "defaults: {max_concurrent: 1000, rate: 1000000}\n"
        q = pg.gateway("q")
        q.start(timeout=test_pg.WAIT_S)
        # The SQLite reference: the same policies and approvers, no database: key.
        sgw = harness.Gateway(pg.policies, extra_args=["--config", pg.config("s", database=False),
                                                       "--tool-uids", "1949000000:256"])
        sgw.start()
        try:
            for gw in (a, sgw):  # warm up both
                round_trip(gw)
            # Interleaved, so that load on the machine hits both alike.
            pg_rt, sq_rt = [], []
            for _ in range(rounds):
                pg_rt.append(round_trip(a))
                sq_rt.append(round_trip(sgw))
            p_pg, p_sq = statistics.median(pg_rt) * 1e3, statistics.median(sq_rt) * 1e3
            print("round trip hold+approve+run p50: postgresql %.1f ms  sqlite %.1f ms  ratio %.2f"
                  " (target <= 1.5)" % (p_pg, p_sq, p_pg / p_sq))
            per = max(rounds, 10) * 10  # seconds per phase, not a blip
            keep = KeepAlive()
            for label, fn in (("a connection per request", hold_only), ("keep-alive", keep)):
                one, two, one_again, m1, m2 = hold_rates(cluster, a, b, fn, per)
                ref = (one + one_again) / 2
                print("holds/s with %d clients, %s: one gateway %.0f (%.0f, %.0f)  two gateways "
                      "%.0f  ratio %.2f (target >= 1.6)"
                      % (CLIENTS, label, ref, one, one_again, two, two / ref))
                print("  one gateway:  " + m1.text)
                print("  two gateways: " + m2.text)
            keep.close()
            rates = {"plain": [], "quota": []}
            for _ in range(2):  # interleaved
                for name, gw in (("plain", a), ("quota", q)):
                    rates[name].append(concurrent(echo, [gw], max(rounds, 10))[0])
            plain, quota = statistics.mean(rates["plain"]), statistics.mean(rates["quota"])
            print("direct calls/s with %d clients: quotas per gateway %.0f  quotas counted in "
                  "postgresql %.0f  ratio %.2f" % (CLIENTS, plain, quota, quota / plain))
            sq_rate, _ = concurrent(hold_only, [sgw], per)
            print("holds/s with %d clients: one gateway on sqlite %.0f (reference)" % (CLIENTS, sq_rate))
        finally:
            sgw.stop()
            sgw.cleanup()
    finally:
        pg.close()
        cluster.close()


if __name__ == "__main__":
    main()
