"""Network policy (issue 17), through the real `gatehouse serve` and the real BPF filter.

Per tier: process (calls known by their uid), container through its pool and through its
direct path (calls known by their cgroup v2 directory; `network: none` keeps its own empty
network namespace, an egress list gets the host's, filtered).

The tests listen on loopback addresses of their own (127.0.0.2, 127.0.0.3, ::1) and a tool
(tests/nettool) tries each destination, the gateway's own port and a raw socket; traffic only
ever goes to loopback. Checked: `network: none` reaches nothing, an egress list reaches exactly
what it lists (also from a grandchild), every attempt is in the call's audit record, a reload
changes the list for the next call while a call in flight keeps its own (the call waits on a
connection the test holds open), and load errors
(bad CIDR, missing port, wildcard, wasm, the gateway's own port) name file:line:col. The record
also lists the programs the call executed, with their first argv words (hostile ones included);
dns: true gives the tool a resolv.conf naming the host's resolvers; and a host name is resolved
again when its DNS answer's TTL runs out (ReresolveTest: a DNS server of the test's own, on
loopback, named only in the gateway's own mount namespace).
"""
import base64
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

NETTOOL = os.path.join(harness.BUILD_POLICIES, "tools", "nettool")
WASM_MODULE = os.path.join(harness.BUILD_POLICIES, "tools", "wasm-jsonq.wasm")
TOOL_EXEC = {"path": NETTOOL, "argv": [NETTOOL]}  # the tool's own exec, as the record shows it


def bpf_unavailable():
    if os.geteuid() != 0:
        return "needs root (the gateway attaches BPF programs to a cgroup)"
    for mnt in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(mnt, "cgroup.procs")) and \
                os.path.exists(os.path.join(mnt, "cgroup.subtree_control")):
            return None
    return "no cgroup v2 hierarchy mounted"


class Listeners:
    """TCP listeners on 127.0.0.2 and 127.0.0.3 and [::1], a UDP socket on 127.0.0.2."""

    def __init__(self):
        self.socks = []
        self.tcp2 = self._tcp(socket.AF_INET, "127.0.0.2")
        self.tcp3 = self._tcp(socket.AF_INET, "127.0.0.3")
        try:
            self.tcp6 = self._tcp(socket.AF_INET6, "::1")
        except OSError:
            self.tcp6 = None
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.2", 0))
        self.udp.setblocking(False)
        self.socks.append(self.udp)
        self.udp2 = self.udp.getsockname()[1]
        # A call that connects here waits (nettool's hold:) until the test closes its end.
        self.gate_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.gate_sock.bind(("127.0.0.2", 0))
        self.gate_sock.listen(4)
        self.gate_sock.settimeout(60)
        self.socks.append(self.gate_sock)
        self.gate = self.gate_sock.getsockname()[1]

    def _tcp(self, family, addr):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((addr, 0))
        s.listen(64)
        self.socks.append(s)
        return s.getsockname()[1]

    def datagrams(self):
        got = []
        while True:
            try:
                got.append(self.udp.recv(64))
            except BlockingIOError:
                return got

    def close(self):
        for s in self.socks:
            s.close()


def nettool_policy(name, network="", isolation="process"):
    return """
name: %s
description: Tries network destinations.
command: ["%s"]
isolation: %s
%s
arguments:
  type: object
  properties:
    try: {type: array, items: {type: string}}
""" % (name, NETTOOL, isolation, network)


def outcomes(record):
    """{attempt: "ok" | "EPERM" | ...} from the tool's stdout."""
    out = {}
    for line in record["stdout"].splitlines():
        what, _, result = line.rpartition(" ")
        out[what] = result
    return out


def finished_record(state_dir, call_id):
    for r in harness.audit_records(state_dir):
        if r.get("event") == "call.finished" and r.get("fields", r).get("call_id") == call_id:
            return r.get("fields", r)
    return None


def dests(entries):
    return sorted((e["op"], e.get("proto"), e.get("addr"), e.get("port")) for e in entries)


class NetworkTest(unittest.TestCase):
    """The process tier; subclasses run the same checks in other tiers."""
    ISOLATION = "process"
    ENV = None
    OWN_NAMESPACE = False  # network: none is a namespace of its own (refused there, not EPERM)
    RECORDS_NONE = True    # a call with network: none has a network record
    EXECS_SEEN = True      # the tool's execs are host execve calls
    RAW_IN_OWN = False     # network: none lets a raw socket be made (in its own stack)

    @classmethod
    def setUpClass(cls):
        why = bpf_unavailable()
        if why:
            harness.skip(why)
        cls.ln = Listeners()
        ln = cls.ln
        cls.dir = tempfile.mkdtemp(prefix="gh-pol-net-")
        iso = cls.ISOLATION
        harness.write_policy(cls.dir, "none", nettool_policy("none", isolation=iso))
        egress = ['"127.0.0.2:%d"' % ln.tcp2, '"127.0.0.2:%d"' % ln.udp2]
        if ln.tcp6:
            egress.append('"[::1]:%d"' % ln.tcp6)
        harness.write_policy(cls.dir, "some", nettool_policy(
            "some", "network:\n  egress: [%s]\n" % ", ".join(egress), iso))
        harness.write_policy(cls.dir, "dns", nettool_policy(
            "dns", "network:\n  egress: [%s]\n  dns: true\n" % egress[0], iso))
        harness.write_policy(cls.dir, "reload", cls.reload_policy("127.0.0.2:%d" % ln.tcp2))
        cls.gw = harness.Gateway(cls.dir, env=cls.ENV).start()
        if "network.unavailable" in cls.gw.read_log():
            log = cls.gw.read_log()
            cls.gw.stop()
            harness.skip("BPF cannot be used here: " + log)
        r = cls.gw.call("none", {"try": []})
        if r.status != 200 and b"not available" in r.body:
            cls.gw.stop()
            harness.skip("isolation %s unavailable here: %s" % (iso, r.body.decode()))

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()
        cls.ln.close()

    @classmethod
    def reload_policy(cls, dest):
        """The reload test's policy: dest and the gate listener."""
        return nettool_policy("reload", "network: {egress: [\"%s\", \"127.0.0.2:%d\"]}\n" % (
            dest, cls.ln.gate), cls.ISOLATION)

    def attempts(self):
        ln, gw = self.ln, self.gw
        a = {
            "listed": "tcp:127.0.0.2:%d" % ln.tcp2,
            "other": "tcp:127.0.0.3:%d" % ln.tcp3,
            "gateway": "tcp:127.0.0.1:%d" % gw.port,
            "gateway_any": "tcp:0.0.0.0:%d" % gw.port,
            "udp_listed": "udp:127.0.0.2:%d" % ln.udp2,
            "udp_other": "udp:127.0.0.3:%d" % ln.udp2,
            "grandchild_listed": "fork:tcp:127.0.0.2:%d" % ln.tcp2,
            "grandchild_other": "fork:tcp:127.0.0.3:%d" % ln.tcp3,
            "raw": "raw",
        }
        if ln.tcp6:
            a["v6_listed"] = "tcp6:[::1]:%d" % ln.tcp6
            a["v6_mapped_gateway"] = "tcp6:[::ffff:127.0.0.1]:%d" % gw.port
        return a

    def run_tool(self, tool, attempts):
        r = self.gw.call(tool, {"try": list(attempts.values())})
        self.assertEqual(r.status, 200, r.body)
        rec = r.json()
        self.assertEqual(rec["status"], "succeeded", rec)
        got = outcomes(rec)
        return rec, {k: got.get(v) for k, v in attempts.items()}

    def test_none_reaches_nothing(self):
        self.ln.datagrams()
        rec, got = self.run_tool("none", self.attempts())
        for k, v in got.items():
            self.assertIsNotNone(v, "%s not tried: %s" % (k, rec["stdout"]))
            if self.OWN_NAMESPACE and (k.startswith("udp") or (k == "raw" and self.RAW_IN_OWN)):
                continue  # sent into the sandbox's own lo: the listener's check below
            self.assertNotEqual(v, "ok", "%s reached with network: none (%s)" % (k, rec["stdout"]))
            if k != "raw" and not self.OWN_NAMESPACE:
                self.assertEqual(v, "EPERM", k)
        self.assertEqual(self.ln.datagrams(), [])
        if not self.RECORDS_NONE:
            self.assertNotIn("network", rec)
            return
        net = rec["network"]
        if self.OWN_NAMESPACE:
            # Nothing filtered, everything recorded: the attempts stayed in the sandbox's own
            # namespace, whose lo has none of the listeners.
            self.assertIs(net.get("own_namespace"), True)
            self.assertIn(("connect", "tcp", "127.0.0.1", self.gw.port), dests(net["allowed"]))
            self.assertIn(("sendmsg", "udp", "127.0.0.2", self.ln.udp2), dests(net["allowed"]))
        else:
            self.assertEqual(net["allowed"], [])
            self.assertEqual(net["allowed_total"], 0)
            self.assertIn(("connect", "tcp", "127.0.0.1", self.gw.port), dests(net["denied"]))
            self.assertIn(("sendmsg", "udp", "127.0.0.2", self.ln.udp2), dests(net["denied"]))
        self.assertEqual(rec["execs"], [TOOL_EXEC])
        fin = finished_record(self.gw.state_dir, rec["call_id"])
        self.assertIsNotNone(fin)
        self.assertEqual(fin["network"], net)

    def test_egress_reaches_exactly_the_list(self):
        self.ln.datagrams()
        rec, got = self.run_tool("some", self.attempts())
        ok = {"listed", "udp_listed", "grandchild_listed", "v6_listed"}
        for k, v in got.items():
            if k in ok:
                self.assertEqual(v, "ok", "%s: %s" % (k, rec["stdout"]))
            elif k == "raw":
                self.assertNotEqual(v, "ok", "%s reached: %s" % (k, rec["stdout"]))
            else:
                self.assertEqual(v, "EPERM", "%s: %s" % (k, rec["stdout"]))
        self.assertEqual(self.ln.datagrams(), [b"x"])
        net = rec["network"]
        ln, port = self.ln, self.gw.port
        allowed = dests(net["allowed"])
        self.assertEqual(allowed.count(("connect", "tcp", "127.0.0.2", ln.tcp2)), 2)  # + grandchild
        self.assertIn(("sendmsg", "udp", "127.0.0.2", ln.udp2), allowed)
        denied = dests(net["denied"])
        for d in [("connect", "tcp", "127.0.0.3", ln.tcp3), ("connect", "tcp", "127.0.0.1", port),
                  ("connect", "tcp", "0.0.0.0", port), ("sendmsg", "udp", "127.0.0.3", ln.udp2)]:
            self.assertIn(d, denied)
        self.assertEqual(net["denied_total"], len(net["denied"]))
        fin = finished_record(self.gw.state_dir, rec["call_id"])
        self.assertEqual(fin["network"], net)
        self.assertNotIn("own_namespace", net)
        if self.EXECS_SEEN:
            self.assertEqual(rec["execs"], [TOOL_EXEC])
            self.assertEqual(fin["execs"], [TOOL_EXEC])
        else:  # said so, never faked with runsc's own execs
            self.assertNotIn("execs", rec)
            self.assertIn("gVisor", rec["execs_unseen"])
        m = self.gw.request("GET", "/metrics").body.decode()
        self.assertIn("gatehouse_network_denied_total", m)

    def test_execs_record_first_four_argv_words(self):
        # nettool's "execargs" runs /proc/self/exe with six hostile words (tests/nettool): the
        # record keeps exactly the first four, each cut to 64 bytes, JSON-escaped, invalid
        # UTF-8 shown as \xNN with the exact bytes in base64.
        if not self.EXECS_SEEN:
            self.skipTest("the tool's execs happen inside gVisor's kernel (execs_unseen)")
        rec, got = self.run_tool("none", {"exec": "execargs"})
        self.assertEqual(got["exec"], "ok", rec["stdout"])
        long_word = b"x" + "\u00e9".encode() * 40
        cut = long_word[:64]
        words = [b"child", b'say "hi"\\ and\nbye', b"bin\xff\xfe\x01end", cut]
        want = {"path": "/proc/self/exe",
                "argv": ["child", 'say "hi"\\ and\nbye', "bin\\xff\\xfe\x01end",
                         "x" + "\u00e9" * 31],
                "argv_truncated": [3],
                "argv_more": True,
                "argv_base64": [base64.b64encode(w).decode() for w in words]}
        self.assertEqual(rec["execs"], [TOOL_EXEC, want])
        self.assertEqual(rec["execs_total"], 2)
        fin = finished_record(self.gw.state_dir, rec["call_id"])
        self.assertEqual(fin["execs"], rec["execs"])

    def test_dns_true_names_the_host_resolvers(self):
        # dns: true opens port 53 of /etc/resolv.conf's name servers; the tool's own
        # /etc/resolv.conf names those same servers (container and gvisor: a generated /etc),
        # and without dns: true it names none. No query is sent.
        with open("/etc/resolv.conf") as f:
            host = [l.split()[1] for l in f if l.split()[:1] == ["nameserver"]
                    and len(l.split()) > 1]
        read = "read:/etc/resolv.conf"

        def servers(tool):
            rec, got = self.run_tool(tool, {"read": read})
            self.assertEqual(got["read"], "ok", rec["stdout"])
            lines = [l[len("read: "):] for l in rec["stdout"].splitlines() if l.startswith("read: ")]
            return rec, [l.split()[1] for l in lines if l.split()[:1] == ["nameserver"]]
        rec, got = servers("dns")
        self.assertEqual(got, host, rec["stdout"])
        if not host:
            self.assertIn("read: # the host's name servers (network.dns)", rec["stdout"])
        if self.ISOLATION != "process":  # the process tier reads the host's own file
            rec, got = servers("some")
            self.assertEqual(got, [], rec["stdout"])
            self.assertIn("read: # no ", rec["stdout"])

    def test_calls_back_to_back_keep_their_own_policy(self):
        # A pool slot (or tool uid) serves "some" and "none" in turn: each call is under its
        # own policy, and what one call did never shows in the other's record.
        listed = "tcp:127.0.0.2:%d" % self.ln.tcp2
        for _ in range(3):
            for tool, want in (("some", "ok"), ("none", "ECONNREFUSED" if self.OWN_NAMESPACE
                                                else "EPERM")):
                rec, got = self.run_tool(tool, {"listed": listed})
                self.assertEqual(got["listed"], want, (tool, rec["stdout"]))
                if tool == "none" and not self.RECORDS_NONE:
                    continue
                net = rec["network"]
                self.assertEqual(len(net["allowed"]) + len(net["denied"]), 1, (tool, net))

    def test_reload_changes_the_next_call_not_one_in_flight(self):
        ln, gw = self.ln, self.gw
        listed, other = "tcp:127.0.0.2:%d" % ln.tcp2, "tcp:127.0.0.3:%d" % ln.tcp3
        result = {}

        def in_flight():
            result["r"] = gw.call("reload", {"try": ["hold:tcp:127.0.0.2:%d" % ln.gate, listed,
                                                     other]})

        t = threading.Thread(target=in_flight)
        t.start()
        conn, _ = ln.gate_sock.accept()  # the call is running, under the policy as loaded
        try:
            harness.write_policy(self.dir, "reload", self.reload_policy("127.0.0.3:%d" % ln.tcp3))
            loads = sum(1 for r in harness.audit_records(gw.state_dir)
                        if r.get("event") == "policy.loaded")
            gw.send_signal(signal.SIGHUP)
            self.assertTrue(harness.wait_until(lambda: sum(
                1 for r in harness.audit_records(gw.state_dir)
                if r.get("event") == "policy.loaded") > loads, 60))
            after = outcomes(gw.call("reload", {"try": [listed, other]}).json())
            self.assertEqual((after.get(listed), after.get(other)), ("EPERM", "ok"), after)
        finally:
            conn.close()  # the call in flight goes on
            t.join(90)
        before = outcomes(result["r"].json())
        self.assertEqual((before.get(listed), before.get(other)), ("ok", "EPERM"), before)


class ContainerNetworkTest(NetworkTest):
    """The container tier through its pool: each slot's cgroup v2 directory is filtered."""
    ISOLATION = "container"
    OWN_NAMESPACE = True

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            harness.skip("the container tier needs root (uid maps, cgroups)")
        super().setUpClass()


class ContainerDirectNetworkTest(ContainerNetworkTest):
    """The container tier's direct path: a cgroup of the call's own, put under its policy
    before the child is moved in."""
    ENV = {"GATEHOUSE_CONTAINER_POOL": "0"}


class GvisorNetworkTest(NetworkTest):
    """gVisor: network: none is gVisor's own netstack with only loopback (--network=none, not
    recorded); an egress list runs runsc --network=host with the keeper, runsc, the gofer and the
    sentry in a filtered cgroup v2 directory of the sandbox's own."""
    ISOLATION = "gvisor"
    OWN_NAMESPACE = True
    RECORDS_NONE = False
    EXECS_SEEN = False
    RAW_IN_OWN = True  # gVisor's own netstack makes ping sockets; they reach only its lo

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            harness.skip("the gvisor tier needs root (runsc)")
        super().setUpClass()


class TinyDNS:
    """A DNS server on ADDR:53 (UDP, loopback) for one name: A queries get self.answer with a
    TTL of 1 s, other types of the name no data, other names NXDOMAIN; with self.fail set, every
    query gets SERVFAIL. self.queries counts the name's A queries."""

    def __init__(self, name):
        self.name = name
        self.answer = None
        self.fail = False
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(50):  # a loopback address no other test of this host uses
            self.addr = "127.%d.%d.%d" % (random.randrange(60, 250), random.randrange(1, 250),
                                          random.randrange(1, 250))
            try:
                self.sock.bind((self.addr, 53))
                break
            except OSError:
                continue
        self.sock.settimeout(0.1)
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                data, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            if len(data) < 12:
                continue
            qid, flags = struct.unpack("!HH", data[:4])
            labels, i = [], 12
            while i < len(data) and data[i]:
                labels.append(data[i + 1:i + 1 + data[i]].decode("ascii", "replace"))
                i += 1 + data[i]
            question = data[12:i + 5]
            qtype = struct.unpack("!H", data[i + 1:i + 3])[0] if i + 3 <= len(data) else 0
            name = ".".join(labels).lower()
            answers, rcode = [], 0
            if self.fail:
                rcode = 2
            elif name != self.name:
                rcode = 3
            elif qtype == 1:
                self.queries += 1
                if self.answer:
                    answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 1, 4) +
                                   socket.inet_aton(self.answer))
            head = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1,
                               len(answers), 0, 0)
            self.sock.sendto(head + question + b"".join(answers), peer)

    def stop(self):
        self.stopped = True
        self.thread.join(5)
        self.sock.close()


class ReresolveTest(unittest.TestCase):
    """A host name in network.egress is resolved again when its DNS answer's TTL runs out: the
    next calls get the new address, a call in flight keeps the old one, and a failed
    re-resolution keeps the last addresses. The gateway runs in a mount namespace of its own
    whose /etc/resolv.conf names a tiny DNS server on a loopback address (the host's own
    resolv.conf is never touched); all traffic stays on loopback."""
    NAME = "svc.gatehouse.test"

    @classmethod
    def setUpClass(cls):
        why = bpf_unavailable()
        if why:
            harness.skip(why)
        cls.tmp = tempfile.mkdtemp(prefix="gh-net-dns-")
        os.chmod(cls.tmp, 0o755)
        cls.dns = TinyDNS(cls.NAME)
        cls.dns.answer = "127.0.0.2"
        # One port listened on at both 127.0.0.2 and 127.0.0.3: the name moves between them.
        cls.socks = []
        for _ in range(50):
            a = socket.socket()
            a.bind(("127.0.0.2", 0))
            b = socket.socket()
            try:
                b.bind(("127.0.0.3", a.getsockname()[1]))
            except OSError:
                a.close(), b.close()
                continue
            for x in (a, b):
                x.listen(64)
                x.setblocking(False)
            cls.socks = [a, b]
            break
        cls.port = cls.socks[0].getsockname()[1]
        resolv = os.path.join(cls.tmp, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\noptions timeout:1 attempts:1\n" % cls.dns.addr)
        wrapper = os.path.join(cls.tmp, "gatehouse-in-ns")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\n# the gateway, with our resolv.conf, in a mount namespace of its own\n"
                    "exec unshare -m --propagation private -- sh -c "
                    "'mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"' %s %s \"$@\"\n"
                    % (resolv, harness.GATEHOUSE))
        os.chmod(wrapper, 0o755)
        cls.dir = tempfile.mkdtemp(prefix="gh-pol-dns-")
        harness.write_policy(cls.dir, "named", nettool_policy(
            "named", "network: {egress: [\"%s:%d\"]}\nlimits: {wall_timeout: 60s}\n"
            % (cls.NAME, cls.port)))
        cls.gw = harness.Gateway(cls.dir, binary=wrapper).start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()
        cls.dns.stop()
        for x in cls.socks:
            x.close()

    def reach(self):
        """(127.0.0.2 reached, 127.0.0.3 reached) by a call now."""
        for listener in self.socks:  # accepted and closed: a full backlog would stall connects
            while True:
                try:
                    listener.accept()[0].close()
                except BlockingIOError:
                    break
        two, three = "tcp:127.0.0.2:%d" % self.port, "tcp:127.0.0.3:%d" % self.port
        r = self.gw.call("named", {"try": [two, three]})
        self.assertEqual(r.status, 200, r.body)
        got = outcomes(r.json())
        return got.get(two) == "ok", got.get(three) == "ok"

    def test_ttl_expiry_moves_the_allowlist(self):
        gw = self.gw
        self.assertEqual(self.reach(), (True, False), gw.read_log()[-2000:])
        gate = os.path.join(self.tmp, "go")
        two, three = "tcp:127.0.0.2:%d" % self.port, "tcp:127.0.0.3:%d" % self.port
        result = {}

        def in_flight():
            result["r"] = gw.call("named", {"try": ["wait:" + gate, two, three]})
        t = threading.Thread(target=in_flight)
        t.start()
        gw.wait_inflight(1, caller=t)
        # The answer changes; the TTL (1 s, clamped to 5 s) runs out and the gateway asks again.
        self.dns.answer = "127.0.0.3"
        self.assertTrue(harness.wait_until(lambda: self.reach() == (False, True), 30),
                        gw.read_log()[-3000:])
        self.assertIn("now resolves to 127.0.0.3", gw.read_log())
        open(gate, "w").close()
        t.join(30)
        before = outcomes(result["r"].json())
        self.assertEqual((before.get(two), before.get(three)), ("ok", "EPERM"), result["r"].json())
        # DNS fails: the last addresses stay, and the failure is logged.
        self.dns.fail = True
        self.assertTrue(harness.wait_until(
            lambda: "re-resolving %s failed" % self.NAME in gw.read_log(), 30), gw.read_log()[-3000:])
        self.assertEqual(self.reach(), (False, True))


class LoadErrorTest(unittest.TestCase):
    def check(self, network, isolation="process", extra=""):
        d = tempfile.mkdtemp(prefix="gh-pol-bad-")
        text = nettool_policy("bad", network).replace("isolation: process", "isolation: " + isolation)
        if isolation == "wasm":
            text = ("name: bad\ndescription: x\nisolation: wasm\nmodule: %s\n%s" % (WASM_MODULE, network))
        path = harness.write_policy(d, "bad", text + extra)
        p = subprocess.run([harness.GATEHOUSE, "policy", "check", d], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        return path, p.stdout + p.stderr

    def test_errors_name_file_line_col(self):
        cases = [
            ('network:\n  egress: ["10.0.0.1/8:443"]\n', "bits set past /8"),
            ('network:\n  egress: ["10.0.0.0/33:443"]\n', "not a valid IPv4"),
            ('network:\n  egress: ["10.0.0.0/08:443"]\n', "not a valid IPv4"),
            ('network:\n  egress: ["10.0.0.1"]\n', "a port is required"),
            ('network:\n  egress: ["[::1]"]\n', "expected [IPV6]:PORT"),
            ('network:\n  egress: ["127.0.0.1:0"]\n', "the port must be"),
            ('network:\n  egress: ["*:443"]\n', "wildcard"),
            ('network:\n  egress: ["*.example.com:443"]\n', "wildcard"),
            ('network:\n  egress: ["[2001:db8::1/129]:443"]\n', "not a valid IPv6"),
            ('network:\n  egres: []\n', "unknown key 'egres'"),
        ]
        for network, want in cases:
            path, out = self.check(network)
            self.assertIn(want, out, network)
            self.assertRegex(out, r"%s:\d+:\d+: " % path, network)

    def test_location_is_the_entry(self):
        path, out = self.check('network:\n  egress:\n    - "127.0.0.2:80"\n    - "10.0.0.1/8:443"\n')
        with open(path) as f:
            lines = f.read().split("\n")
        want = next(i for i, l in enumerate(lines, 1) if "10.0.0.1/8" in l)
        self.assertIn("%s:%d:7: network.egress: '10.0.0.1/8:443'" % (path, want), out)

    def test_wasm_refuses_egress(self):
        _, out = self.check('network:\n  egress: ["127.0.0.2:80"]\n', isolation="wasm")
        self.assertIn("not available with isolation: wasm (WASI has no sockets)", out)

    def test_gateway_port_refused_at_load(self):
        if bpf_unavailable():
            harness.skip(bpf_unavailable())
        d = tempfile.mkdtemp(prefix="gh-pol-gw-")
        harness.write_policy(d, "fine", nettool_policy("fine"))
        with harness.Gateway(d) as gw:
            for entry in ["127.0.0.1:%d" % gw.port, "127.0.0.0/8:%d" % gw.port,
                          "0.0.0.0:%d" % gw.port, "localhost:%d" % gw.port]:
                path = harness.write_policy(d, "fine", nettool_policy(
                    "fine", 'network: {egress: ["%s"]}\n' % entry))
                gw.send_signal(signal.SIGHUP)
                self.assertTrue(harness.wait_until(
                    lambda: "reaches the gateway's own API" in gw.read_log() and
                    entry in gw.read_log(), 20), entry)
                self.assertRegex(gw.read_log(), r"%s:\d+:\d+: network.egress: '%s'" % (path, entry))
            rejected = [r for r in harness.audit_records(gw.state_dir) if r.get("event") == "policy.rejected"]
            self.assertEqual(len(rejected), 4)


if __name__ == "__main__":
    unittest.main()
