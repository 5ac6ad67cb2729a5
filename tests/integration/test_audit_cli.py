"""`gatehouse audit verify` on a log the real gateway wrote: exit 0 and OK for an intact log,
exit 3 with WARNING lines and INTACT WITH WARNINGS for a torn tail or a stray file, exit 1 and
TAMPERED for an edited record."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness


class LoggedGateway(unittest.TestCase):
    """A log the real gateway wrote (three echo calls) in cls.state, and copies of it a test
    may damage. Subclasses add gateway flags through gateway_args(master)."""

    @classmethod
    def gateway_args(cls, master):
        return []

    @classmethod
    def setUpClass(cls):
        if not harness.GATEHOUSE:
            harness.skip("GATEHOUSE is not set")
        cls.master = tempfile.mkdtemp(prefix="gh-auditcli-")
        cls.state = os.path.join(cls.master, "state")
        os.mkdir(cls.state)
        with harness.Gateway(harness.BUILD_POLICIES, state_dir=cls.state,
                             extra_args=cls.gateway_args(cls.master)) as gw:
            for i in range(3):
                r = gw.call("echo", {"text": "n%d" % i})
                assert r.status == 200, r.body
            cls.settle(gw)

    @classmethod
    def settle(cls, gw):
        """Called with the gateway still running, after the calls."""

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.master, ignore_errors=True)

    def copy(self):
        """A copy of the gateway's log this test may damage, and its live segment."""
        d = tempfile.mkdtemp(prefix="gh-auditcli-")
        self.addCleanup(shutil.rmtree, d, True)
        shutil.copytree(os.path.join(self.state, "audit"), os.path.join(d, "audit"))
        names = sorted(n for n in os.listdir(os.path.join(d, "audit")) if n.endswith(".jsonl"))
        return d, os.path.join(d, "audit", names[-1])


class AuditVerifyCli(LoggedGateway):
    def test_intact_log_is_ok(self):
        rc, out = harness.verify_audit(self.state)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"(?m)^OK: \d+ records, hash chain intact$")
        self.assertNotIn("WARNING", out)

    def test_torn_tail_is_a_warning_exit_3(self):
        state, seg = self.copy()
        with open(seg, "rb") as f:
            data = f.read()
        end = data.index(b"\0") if b"\0" in data else len(data)
        with open(seg, "r+b") as f:  # a half-written record where the zeros began
            f.seek(end)
            f.write(b'{"seq":99,"ts":"2026')
        rc, out = harness.verify_audit(state)
        self.assertEqual(rc, 3, out)
        self.assertRegex(out, r"(?m)^WARNING: .*torn")
        self.assertRegex(out, r"(?m)^INTACT WITH WARNINGS: \d+ records, hash chain intact; "
                              r"\d+ warning\(s\) above$")

    def test_stray_file_is_a_warning_exit_3(self):
        state, _ = self.copy()
        with open(os.path.join(state, "audit", "notes.txt"), "w") as f:
            f.write("not a segment\n")
        rc, out = harness.verify_audit(state)
        self.assertEqual(rc, 3, out)
        self.assertRegex(out, r"(?m)^WARNING: .*notes\.txt")
        self.assertIn("INTACT WITH WARNINGS", out)

    def test_edited_record_is_tampered_exit_1(self):
        state, seg = self.copy()
        with open(seg, "rb") as f:
            data = f.read()
        i = data.index(b'"exit_code":0')  # a call that succeeded, made to look failed
        with open(seg, "wb") as f:
            f.write(data[:i] + b'"exit_code":1' + data[i + 13:])
        rc, out = harness.verify_audit(state)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"(?m)^TAMPERED: first bad record seq \d+: ")


def live_records(seg):
    """The record lines of a segment (the live one ends in preallocated zeros)."""
    with open(seg, "rb") as f:
        return f.read().split(b"\0", 1)[0].splitlines(keepends=True)


def rehash(lines, start):
    """Rewrite lines[start:] so the chain verifies again: what someone with write access to
    the log can always do, and what only anchors reveal."""
    prev = json.loads(lines[start - 1])["hash"] if start else "0" * 64
    for i in range(start, len(lines)):
        body = lines[i].rstrip(b"\n")
        head = body[:body.rindex(b',"prev":"')]
        head += b',"prev":"' + prev.encode() + b'"'
        prev = hashlib.sha256(head).hexdigest()
        lines[i] = head + b',"hash":"' + prev.encode() + b'"}\n'
    return lines


class AnchoredVerifyCli(LoggedGateway):
    """A gateway with --anchor-file: every record names its node, the chain head is appended
    to the anchor file, and verify --anchor-file tells a cut or rewritten tail (exit 4) from
    an intact log, which plain verify cannot."""

    @classmethod
    def gateway_args(cls, master):
        cls.anchors = os.path.join(master, "anchors.jsonl")
        return ["--anchor-file", cls.anchors]

    @classmethod
    def settle(cls, gw):
        assert harness.wait_until(
            lambda: gw.metric('gatehouse_audit_anchored_seq{target="file"}') >=
            gw.metric("gatehouse_audit_last_seq"), 30), "anchoring does not catch up"

    def verify(self, state, *extra):
        p = subprocess.run([harness.GATEHOUSE, "audit", "verify", os.path.join(state, "audit")]
                           + list(extra), capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr

    def test_records_name_the_node_kept_in_the_state_dir(self):
        with open(os.path.join(self.state, "node")) as f:
            node = f.read().strip()
        recs = harness.audit_records(self.state)
        self.assertTrue(recs and all(r.get("node") == node for r in recs), recs[:2])
        with open(self.anchors) as f:
            anchors = [json.loads(line) for line in f]
        self.assertEqual(anchors[-1]["seq"], recs[-1]["seq"], "the last record is not anchored")
        self.assertEqual(anchors[-1]["hash"], recs[-1]["hash"])
        self.assertTrue(all(a["node"] == node for a in anchors))

    def test_intact_log_matches_its_anchors(self):
        rc, out = self.verify(self.state, "--anchor-file", self.anchors)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"(?m)^OK: \d+ records, hash chain intact; all \d+ anchored heads "
                              r"of node \w+ present$")

    def test_cut_tail_is_caught_only_with_anchors_exit_4(self):
        state, seg = self.copy()
        lines = live_records(seg)
        with open(seg, "wb") as f:  # the last two records cut off, cleanly
            f.write(b"".join(lines[:-2]))
        rc, out = self.verify(state)
        self.assertEqual(rc, 0, "plain verify cannot see a cut tail: " + out)
        rc, out = self.verify(state, "--anchor-file", self.anchors)
        self.assertEqual(rc, 4, out)
        self.assertRegex(out, r"(?m)^NOT AS ANCHORED: node \w+: the log ends at seq \d+, but seq "
                              r"\d+ was anchored .*cut off")

    def test_rewritten_tail_is_caught_only_with_anchors_exit_4(self):
        state, seg = self.copy()
        lines = live_records(seg)
        i = max(k for k, line in enumerate(lines) if b'"exit_code":0' in line)
        lines[i] = lines[i].replace(b'"exit_code":0', b'"exit_code":1')
        with open(seg, "wb") as f:
            f.write(b"".join(rehash(lines, i)))
        rc, out = self.verify(state)
        self.assertEqual(rc, 0, "the rewritten chain verifies on its own: " + out)
        rc, out = self.verify(state, "--anchor-file", self.anchors)
        self.assertEqual(rc, 4, out)
        m = re.search(r"(?m)^NOT AS ANCHORED: node \w+: seq (\d+) does not hold the head "
                      r"anchored at .*rewritten after seq (\d+)", out)
        self.assertTrue(m, out)  # heads may be coalesced: named are the nearest anchored ones
        self.assertGreaterEqual(int(m.group(1)), i + 1, out)
        self.assertLessEqual(int(m.group(2)), i, out)

    def test_other_nodes_log_has_no_anchor_exit_4(self):
        rc, out = self.verify(self.state, "--anchor-file", self.anchors, "--node", "elsewhere")
        self.assertEqual(rc, 4, out)
        self.assertIn("no anchor of node elsewhere", out)

    def test_torn_anchor_append_is_ended_by_the_next_start_and_skipped_with_a_warning(self):
        """A crash mid-append leaves a line without its newline; the next start ends it before
        appending, and verify skips it with a warning (exit 3), checking every other anchor."""
        state, _ = self.copy()
        anchors = os.path.join(state, "anchors.jsonl")
        with open(self.anchors, "rb") as f:
            data = f.read()
        with open(anchors, "wb") as f:
            f.write(data + b'{"node":"torn-by-a-cra')
        shutil.copy(os.path.join(self.state, "node"), os.path.join(state, "node"))
        with harness.Gateway(harness.BUILD_POLICIES, state_dir=state,
                             extra_args=["--anchor-file", anchors]) as gw:
            self.assertEqual(gw.call("echo", {"text": "after"}).status, 200)
        with open(anchors, "rb") as f:
            lines = f.read().split(b"\n")
        torn = lines.index(b'{"node":"torn-by-a-cra')
        self.assertGreater(len([x for x in lines[torn + 1:] if x]), 0, "nothing appended after it")
        rc, out = self.verify(state, "--anchor-file", anchors)
        self.assertEqual(rc, 3, out)
        self.assertRegex(out, r"(?m)^WARNING: .*1 line\(s\) that are not anchors")
        self.assertRegex(out, r"(?m)^INTACT WITH WARNINGS: .*anchored heads of node \w+ present")

    def test_missing_anchor_file_is_unreadable_exit_2(self):
        rc, out = self.verify(self.state, "--anchor-file", os.path.join(self.master, "nope"))
        self.assertEqual(rc, 2, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
