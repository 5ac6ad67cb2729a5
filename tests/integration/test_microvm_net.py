"""Network policy in the microvm tier (issue 17), through the real gateway, QEMU and BPF filter.

With `network.egress` the guest gets a virtio NIC on QEMU's user-mode stack: the guest's
connections and datagrams are made by QEMU's own host sockets, in the host's namespace, inside
the jail's cgroup v2 directory, so the same BPF programs decide each one. From the guest the
host's 127.0.0.1 is 10.0.2.2. Traffic only ever goes to the test's own listeners on loopback.

Checked: `network: none` gives the guest no NIC (nothing leaves it, no record); an egress list
reaches exactly what it lists, from the tool and from a grandchild; the gateway's own port is
refused whatever the guest does; a denied datagram never arrives; every attempt is in the call's
record and its `call.finished` audit record, which says the tool's execs are not host execs; a
reload changes the list for the next call while a call in flight keeps its own.
"""
import os
import signal
import socket
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_microvm import why_unavailable  # noqa: E402
from test_network import NETTOOL, bpf_unavailable, dests, finished_record, outcomes  # noqa: E402

HOST = "10.0.2.2"  # the host's 127.0.0.1, as QEMU's user-mode stack shows it to the guest


def policy(name, network):
    return """name: %s
description: Tries network destinations from a microVM guest.
command: ["%s"]
isolation: microvm
limits: {memory_mb: 96, wall_timeout: 90s, cpu_time: 90s}
pool: {size: 1}
%s
arguments:
  type: object
  properties:
    try: {type: array, items: {type: string}}
""" % (name, NETTOOL, network)


class MicroVMNetwork(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = why_unavailable() or bpf_unavailable()
        if why:
            harness.skip(why)
        cls.socks = []
        cls.tcp_listed, cls.tcp_other = cls.listen(socket.SOCK_STREAM), cls.listen(socket.SOCK_STREAM)
        cls.udp_listed, cls.udp_other = cls.listen(socket.SOCK_DGRAM), cls.listen(socket.SOCK_DGRAM)
        cls.dir = tempfile.mkdtemp(prefix="gh-pol-mvmnet-")
        harness.write_policy(cls.dir, "none", policy("none", "network: none"))
        harness.write_policy(cls.dir, "some", policy("some", "network:\n  egress: [%s]\n" % ", ".join(
            '"127.0.0.1:%d"' % cls.port(s) for s in (cls.tcp_listed, cls.udp_listed))))
        cls.gate = cls.listen(socket.SOCK_STREAM)
        cls.gate.settimeout(120)
        harness.write_policy(cls.dir, "reload", cls.reload_policy(cls.tcp_listed))
        cls.gw = harness.Gateway(cls.dir).start()
        log = cls.gw.read_log()
        if "network.unavailable" in log:
            cls.gw.stop()
            harness.skip("BPF cannot be used here: " + log)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()
        for s in cls.socks:
            s.close()

    @classmethod
    def listen(cls, kind):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            s.listen(16)
        else:
            s.setblocking(False)
        cls.socks.append(s)
        return s

    @staticmethod
    def port(s):
        return s.getsockname()[1]

    @classmethod
    def reload_policy(cls, dest):
        return policy("reload", "network: {egress: [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]}" % (
            cls.port(dest), cls.port(cls.gate)))

    def datagrams(self, s):
        got = []
        while True:
            try:
                got.append(s.recv(64))
            except BlockingIOError:
                return got

    def attempts(self):
        p = self.port
        # The denied datagram goes first: QEMU sends the guest's datagrams in order, so once
        # the listed one has arrived a denied one that got through would be there too.
        return {
            "listed": "tcp:%s:%d" % (HOST, p(self.tcp_listed)),
            "other": "tcp:%s:%d" % (HOST, p(self.tcp_other)),
            "gateway": "tcp:%s:%d" % (HOST, self.gw.port),
            "udp_other": "udp:%s:%d" % (HOST, p(self.udp_other)),
            "udp_listed": "udp:%s:%d" % (HOST, p(self.udp_listed)),
            "grandchild_listed": "fork:tcp:%s:%d" % (HOST, p(self.tcp_listed)),
            "grandchild_gateway": "fork:tcp:%s:%d" % (HOST, self.gw.port),
        }

    def run_tool(self, tool):
        for s in (self.udp_listed, self.udp_other):
            self.datagrams(s)
        attempts = self.attempts()
        r = self.gw.call(tool, {"try": list(attempts.values())})
        self.assertEqual(r.status, 200, r.body)
        rec = r.json()
        self.assertEqual(rec["status"], "succeeded", rec)
        got = outcomes(rec)
        return rec, {k: got.get(v) for k, v in attempts.items()}

    def test_none_has_no_network_at_all(self):
        rec, got = self.run_tool("none")
        for k, v in got.items():
            self.assertIsNotNone(v, "%s not tried: %s" % (k, rec["stdout"]))
            self.assertNotEqual(v, "ok", "%s left a guest without a NIC: %s" % (k, rec["stdout"]))
        self.assertEqual(self.datagrams(self.udp_listed) + self.datagrams(self.udp_other), [])
        self.assertNotIn("network", rec)  # no NIC, no host sockets: nothing to record

    def test_egress_reaches_exactly_the_list(self):
        rec, got = self.run_tool("some")
        for k, v in got.items():
            if k in ("listed", "grandchild_listed", "udp_listed", "udp_other"):
                # A datagram leaves the guest either way: whether it left the host is below.
                self.assertEqual(v, "ok", "%s: %s" % (k, rec["stdout"]))
            else:
                self.assertNotEqual(v, "ok", "%s reached: %s" % (k, rec["stdout"]))
        self.assertEqual(self.datagrams(self.udp_listed), [b"x"])
        self.assertEqual(self.datagrams(self.udp_other), [], "a denied datagram arrived")
        net = rec["network"]
        p = self.port
        allowed, denied = dests(net["allowed"]), dests(net["denied"])
        self.assertEqual(allowed.count(("connect", "tcp", "127.0.0.1", p(self.tcp_listed))), 2)
        self.assertIn(("sendmsg", "udp", "127.0.0.1", p(self.udp_listed)), allowed)
        for d in [("connect", "tcp", "127.0.0.1", p(self.tcp_other)),
                  ("sendmsg", "udp", "127.0.0.1", p(self.udp_other))]:
            self.assertIn(d, denied)
        # Once each at least: the guest's TCP may send its SYN again before QEMU's ICMP error
        # reaches it, and QEMU then tries again.
        self.assertIn(("connect", "tcp", "127.0.0.1", self.gw.port), denied)
        self.assertEqual(net["denied_total"], len(net["denied"]))
        self.assertNotIn("execs", rec)  # said so, never faked with QEMU's own
        self.assertIn("guest", rec["execs_unseen"])
        fin = finished_record(self.gw.state_dir, rec["call_id"])
        self.assertIsNotNone(fin)
        self.assertEqual(fin["network"], net)

    def test_calls_back_to_back_keep_their_own_policy(self):
        # Each guest serves one call; its jail's directory is under the call's policy only
        # while the call runs, and one call's attempts never show in the other's record.
        listed = "tcp:%s:%d" % (HOST, self.port(self.tcp_listed))
        for _ in range(2):
            for tool, want in (("some", True), ("none", False)):
                r = self.gw.call(tool, {"try": [listed]})
                self.assertEqual(r.status, 200, r.body)
                rec = r.json()
                self.assertEqual(outcomes(rec).get(listed) == "ok", want, (tool, rec["stdout"]))
                if want:
                    self.assertEqual(len(rec["network"]["allowed"]), 1, rec["network"])
                    self.assertEqual(rec["network"]["denied"], [])

    def test_reload_changes_the_next_call_not_one_in_flight(self):
        gw, p = self.gw, self.port
        listed, other = "tcp:%s:%d" % (HOST, p(self.tcp_listed)), "tcp:%s:%d" % (HOST, p(self.tcp_other))
        result = {}

        def in_flight():
            result["r"] = gw.call("reload", {"try": ["hold:tcp:%s:%d" % (HOST, p(self.gate)),
                                                     listed, other]})

        t = threading.Thread(target=in_flight)
        t.start()
        conn, _ = self.gate.accept()  # the call is running, under the policy as loaded
        try:
            harness.write_policy(self.dir, "reload", self.reload_policy(self.tcp_other))
            loads = sum(1 for r in harness.audit_records(gw.state_dir)
                        if r.get("event") == "policy.loaded")
            gw.send_signal(signal.SIGHUP)
            self.assertTrue(harness.wait_until(lambda: sum(
                1 for r in harness.audit_records(gw.state_dir)
                if r.get("event") == "policy.loaded") > loads, 120))
            after = outcomes(gw.call("reload", {"try": [listed, other]}).json())
            self.assertEqual(after.get(other), "ok", after)
            self.assertNotEqual(after.get(listed), "ok", after)
        finally:
            conn.close()  # the call in flight goes on
            t.join(120)
        before = outcomes(result["r"].json())
        self.assertEqual(before.get(listed), "ok", before)
        self.assertNotEqual(before.get(other), "ok", before)


class MicroVMNetworkShutdown(unittest.TestCase):
    """A call still running when the gateway stops past its grace period: the filter must not
    be detached while its QEMU lives on in the host's namespace (it was, until the gateway
    exited)."""

    def test_nothing_runs_on_unfiltered_after_shutdown(self):
        why = why_unavailable() or bpf_unavailable()
        if why:
            self.skipTest(why)
        gate, other = socket.socket(), socket.socket()
        for s in (gate, other):
            self.addCleanup(s.close)
            s.bind(("127.0.0.1", 0))
            s.listen(4)
        gate.settimeout(120)
        d = tempfile.mkdtemp(prefix="gh-pol-mvmstop-")
        harness.write_policy(d, "some", policy("some", "network: {egress: [\"127.0.0.1:%d\"]}" %
                                               gate.getsockname()[1]))
        gw = harness.Gateway(d, extra_args=["--grace", "1"]).start()
        self.addCleanup(gw.cleanup)
        res = {}
        t = threading.Thread(target=lambda: res.setdefault("r", gw.call("some", {"try": [
            "hold:tcp:%s:%d" % (HOST, gate.getsockname()[1]),
            "tcp:%s:%d" % (HOST, other.getsockname()[1])]})))
        t.start()
        conn, _ = gate.accept()  # the call runs, and waits for the test
        pid = gw.proc.pid
        gw.send_signal(signal.SIGTERM)

        def filter_leaving():  # the gateway left its filtered directory: the programs go next
            try:
                with open("/proc/%d/cgroup" % pid) as f:
                    return "gatehouse-net-" not in f.read()
            except OSError:
                return True

        self.assertTrue(harness.wait_until(filter_leaving, 60))
        conn.close()  # a guest still alive now goes on to the unlisted port
        other.settimeout(0.2)
        reached = None
        for _ in range(50):  # 10 s: the guest's next attempt comes within milliseconds
            try:
                reached, _ = other.accept()
                break
            except socket.timeout:
                continue
        gw.stop()
        t.join(60)
        self.assertIsNone(reached, "the guest reached an unlisted port after the filter went")


if __name__ == "__main__":
    unittest.main()
