"""The front door (issue 10, items 1-3): strict framing, JSON errors for everything, HEAD,
keep-alive order, connection limits under an idle/slowloris flood, request deadlines, and
long polls that hold no thread.

Every case talks raw bytes to the real gateway over loopback. A refused call must never run:
the audit log is checked for call.started records.
"""
import json
import os
import resource
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

BODY = b'{"arguments":{"text":"hi"}}'
L = len(BODY)
CALL = b"POST /v1/tools/echo/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

# name -> (request bytes, expected status, expected error code)
REFUSED = {
    "two_content_lengths": (CALL + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (L, L) + BODY,
                            400, "bad_framing"),
    "conflicting_content_lengths": (CALL + b"Content-Length: %d\r\nContent-Length: 5\r\n\r\n" % L + BODY,
                                    400, "bad_framing"),
    "content_length_and_chunked": (CALL + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n"
                                   % (L, L) + BODY + b"\r\n0\r\n\r\n", 400, "bad_framing"),
    "obsolete_line_folding": (CALL + b"X-A: a\r\n b\r\nContent-Length: %d\r\n\r\n" % L + BODY,
                              400, "bad_framing"),
    "nul_in_header_value": (CALL + b"X-A: a\x00b\r\nContent-Length: %d\r\n\r\n" % L + BODY, 400,
                            "bad_framing"),
    "bare_cr_in_header_value": (CALL + b"X-A: a\rb\r\nContent-Length: %d\r\n\r\n" % L + BODY, 400,
                                "bad_framing"),
    "bare_lf_line_ends": (b"POST /v1/tools/echo/calls HTTP/1.1\nHost: x\nContent-Type: application/json\n"
                          b"Content-Length: %d\n\n" % L + BODY, 400, "bad_framing"),
    "negative_content_length": (CALL + b"Content-Length: -1\r\n\r\n" + BODY, 400, "bad_framing"),
    "signed_content_length": (CALL + b"Content-Length: +%d\r\n\r\n" % L + BODY, 400, "bad_framing"),
    "list_content_length": (CALL + b"Content-Length: %d, %d\r\n\r\n" % (L, L) + BODY, 400,
                            "bad_framing"),
    "huge_content_length": (CALL + b"Content-Length: 99999999999999999999999\r\n\r\n" + BODY, 413,
                            "body_too_large"),
    "bad_chunk_size": (CALL + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY + b"\r\n0\r\n\r\n",
                       400, "bad_framing"),
    "chunk_longer_than_its_size": (CALL + b"Transfer-Encoding: chunked\r\n\r\n2\r\n" + BODY +
                                   b"\r\n0\r\n\r\n", 400, "bad_framing"),
    "gzip_then_chunked": (CALL + b"Transfer-Encoding: gzip, chunked\r\n\r\n%x\r\n" % L + BODY +
                          b"\r\n0\r\n\r\n", 400, "bad_framing"),
    "uri_too_long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    "request_line_never_ends": (b"GET /" + b"a" * 20000, 414, "uri_too_long"),
    "head_too_large": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n",
                       431, "headers_too_large"),
    "too_many_fields": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 120 + b"\r\n", 431,
                        "headers_too_large"),
    "http_2_0": (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"),
    "http_0_9": (b"GET /healthz\r\n\r\n", 400, "bad_framing"),
    "tls_hello_garbage": (b"\x16\x03\x01\x00\xa5garbage\r\n\r\n", 400, "bad_framing"),
    "no_host_in_http_1_1": (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "bad_framing"),
    "two_hosts": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_framing"),
    "space_in_field_name": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 400,
                            "bad_framing"),
}


def exchange(port, data, half_close=True, timeout=10, src=None):
    """Send raw bytes, read until the gateway closes; returns the raw reply."""
    s = socket.socket()
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return out


def parse_responses(raw):
    """Split a byte stream into (status, headers, body) responses (Content-Length framed)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        raw = rest[n:]
    return out


def call_started_count(state_dir):
    return sum(1 for r in harness.audit_records(state_dir) if r["event"] == "call.started")


class FrontDoorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = harness.Gateway(harness.BUILD_POLICIES, extra_args=["--request-timeout", "1"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()

    def test_ambiguous_or_malformed_requests_are_refused_with_json_and_never_run(self):
        started = call_started_count(self.gw.state_dir)
        for name, (data, status, code) in REFUSED.items():
            with self.subTest(name):
                raw = exchange(self.gw.port, data)
                self.assertTrue(raw.startswith(b"HTTP/1.1 %d " % status), raw[:200])
                (st, headers, body), = parse_responses(raw)
                self.assertEqual(headers["content-type"], "application/json")
                err = json.loads(body)["error"]
                self.assertEqual(err["code"], code, err)
                self.assertTrue(err["message"])
        self.assertEqual(call_started_count(self.gw.state_dir), started,
                         "a refused request started a call")

    def test_a_valid_call_still_runs(self):
        raw = exchange(self.gw.port, CALL + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % L + BODY)
        (st, _, body), = parse_responses(raw)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["stdout"], "hi\n")

    def test_chunked_call_runs(self):
        raw = exchange(self.gw.port, CALL + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       b"%x\r\n" % L + BODY + b"\r\n0\r\n\r\n")
        (st, _, body), = parse_responses(raw)
        self.assertEqual(st, 200, body)

    def test_head_answers_as_get_without_a_body(self):
        get = parse_responses(exchange(self.gw.port, b"GET /v1/tools HTTP/1.1\r\nHost: x\r\n"
                                                     b"Connection: close\r\n\r\n"))[0]
        raw = exchange(self.gw.port, b"HEAD /v1/tools HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, rest = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(rest, b"")
        self.assertIn(b"Content-Type: application/json", head)
        self.assertIn(b"Content-Length: %d" % len(get[2]), head)

    def test_keep_alive_refusal_follows_the_earlier_response_in_order(self):
        ok = CALL + b"Content-Length: %d\r\n\r\n" % L + BODY
        bad = CALL + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (L, L) + BODY
        started = call_started_count(self.gw.state_dir)
        resps = parse_responses(exchange(self.gw.port, ok + ok + bad + ok))
        self.assertEqual([r[0] for r in resps], [200, 200, 400], resps)
        self.assertEqual(json.loads(resps[2][2])["error"]["code"], "bad_framing")
        self.assertEqual(call_started_count(self.gw.state_dir), started + 2)

    def test_stalled_head_gets_408(self):
        raw = exchange(self.gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", half_close=False)
        (st, _, body), = parse_responses(raw)
        self.assertEqual(st, 408)
        self.assertEqual(json.loads(body)["error"]["code"], "request_timeout")

    def test_stalled_body_gets_408_and_the_call_never_runs(self):
        started = call_started_count(self.gw.state_dir)
        raw = exchange(self.gw.port, CALL + b"Content-Length: %d\r\n\r\n" % L + BODY[:5],
                       half_close=False)
        (st, _, body), = parse_responses(raw)
        self.assertEqual(st, 408)
        self.assertEqual(call_started_count(self.gw.state_dir), started)


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard < n:
            harness.skip("needs %d open files; the hard limit is %d" % (n, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


class ConnectionFloodTest(unittest.TestCase):
    """2,000 idle and slowloris connections from one address (127.0.0.2) must not shut out a
    client at another address (127.0.0.1); the flood's excess is refused with 429 JSON."""

    def test_flood_from_one_address_does_not_shut_out_others(self):
        raise_fd_limit(6000)
        per_ip = 256
        with harness.Gateway(harness.BUILD_POLICIES,
                             extra_args=["--max-connections-per-ip", str(per_ip)]) as gw:
            socks, refused = [], 0
            try:
                for i in range(2000):
                    s = socket.socket()
                    s.bind(("127.0.0.2", 0))
                    s.connect(("127.0.0.1", gw.port))
                    # Half are idle, half slowloris: the start of a head, never finished.
                    if i % 2:
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    socks.append(s)
                # Every connection beyond the per-address limit is answered 429 and closed.
                for s in socks:
                    s.settimeout(0.0)
                deadline = time.monotonic() + 30
                pending = list(socks)
                while pending and time.monotonic() < deadline:
                    still = []
                    for s in pending:
                        try:
                            d = s.recv(4096)
                            if d.startswith(b"HTTP/1.1 429 "):
                                self.assertIn(b'"too_many_connections"', d)
                                refused += 1
                            elif d:
                                self.fail("unexpected reply to a flood connection: %r" % d[:100])
                        except BlockingIOError:
                            still.append(s)
                    if len(still) == per_ip:
                        break
                    pending = still
                    time.sleep(0.02)
                self.assertEqual(refused, 2000 - per_ip)
                # A normal client elsewhere is served, several times over.
                for _ in range(5):
                    r = gw.call("echo", {"text": "still here"})
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(r.json()["stdout"], "still here\n")
                threads = len(os.listdir("/proc/%d/task" % gw.proc.pid))
                self.assertLess(threads, 100, "connections must not cost a thread each")
            finally:
                for s in socks:
                    s.close()


LEDGER = """name: hold
description: held for approval
command: ["/bin/true"]
isolation: process
blast_radius: high
reversible: false
approval: {required: true, timeout: 1h}
arguments: {type: object, properties: {n: {type: integer}}}
"""


class LongPollTest(unittest.TestCase):
    """300 long polls on a held call hold no thread each, do not delay other calls, and all
    answer when the call is decided."""

    def test_long_polls_hold_no_thread_and_all_answer_on_decision(self):
        raise_fd_limit(4000)
        pdir = tempfile.mkdtemp(prefix="gh-lp-")
        harness.write_policy(pdir, "hold", LEDGER)
        with open(os.path.join(harness.BUILD_POLICIES, "echo.yaml")) as f:
            echo = f.read().replace('["tools/echo"]',
                                    '["%s"]' % os.path.join(harness.BUILD_POLICIES, "tools", "echo"))
        harness.write_policy(pdir, "echo", echo)
        cfg = os.path.join(tempfile.mkdtemp(prefix="gh-lp-cfg-"), "gw.yaml")
        with open(cfg, "w") as f:
            f.write("approval:\n  approvers:\n    alice: approver-token-0123456789abcdef\n")
        os.chmod(cfg, 0o600)
        token = "approver-token-0123456789abcdef"
        with harness.Gateway(pdir, extra_args=["--config", cfg, "--max-connections-per-ip", "1000"]) as gw:
            held = gw.call("hold", {"n": 1})
            self.assertEqual(held.status, 202, held.body)
            h = held.json()
            results, lock = [], threading.Lock()

            def poll():
                r = gw.request("GET", "/v1/calls/%s?wait=60s" % h["call_id"], timeout=90)
                with lock:
                    results.append(r)

            pollers = [threading.Thread(target=poll) for _ in range(300)]
            for t in pollers:
                t.start()
            # Wait until the polls are parked: all 300 connections accepted, none answered.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if len(os.listdir("/proc/%d/fd" % gw.proc.pid)) > 300 * 3:
                    break
                time.sleep(0.05)
            threads = len(os.listdir("/proc/%d/task" % gw.proc.pid))
            self.assertLess(threads, 150, "a long poll must not hold a thread")
            self.assertEqual(results, [])
            r = gw.call("echo", {"text": "meanwhile"})
            self.assertEqual(r.status, 200, r.body)
            d = gw.request("POST", "/v1/approvals/" + h["call_id"],
                           {"decision": "approve", "args_sha256": h["args_sha256"]},
                           headers={"Authorization": "Bearer " + token})
            self.assertEqual(d.status, 200, d.body)
            for t in pollers:
                t.join(timeout=60)
            self.assertEqual(len(results), 300)
            for r in results:
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.json()["status"], "succeeded", r.body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
