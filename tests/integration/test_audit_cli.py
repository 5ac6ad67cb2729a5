"""`gatehouse audit verify` on a log the real gateway wrote: exit 0 and OK for an intact log,
exit 3 with WARNING lines and INTACT WITH WARNINGS for a torn tail or a stray file, exit 1 and
TAMPERED for an edited record."""
import os
import shutil
import tempfile
import unittest

import harness


class AuditVerifyCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not harness.GATEHOUSE:
            harness.skip("GATEHOUSE is not set")
        cls.master = tempfile.mkdtemp(prefix="gh-auditcli-")
        with harness.Gateway(harness.BUILD_POLICIES, state_dir=cls.master) as gw:
            for i in range(3):
                r = gw.call("echo", {"text": "n%d" % i})
                assert r.status == 200, r.body
        cls.audit = os.path.join(cls.master, "audit")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.master, ignore_errors=True)

    def copy(self):
        """A copy of the gateway's log this test may damage."""
        d = tempfile.mkdtemp(prefix="gh-auditcli-")
        self.addCleanup(shutil.rmtree, d, True)
        shutil.copytree(self.audit, os.path.join(d, "audit"))
        return d

    def live_segment(self, state):
        d = os.path.join(state, "audit")
        return os.path.join(d, sorted(n for n in os.listdir(d) if n.endswith(".jsonl"))[-1])

    def test_intact_log_is_ok(self):
        rc, out = harness.verify_audit(self.master)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"(?m)^OK: \d+ records, hash chain intact$")
        self.assertNotIn("WARNING", out)

    def test_torn_tail_is_a_warning_exit_3(self):
        state = self.copy()
        seg = self.live_segment(state)
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
        state = self.copy()
        with open(os.path.join(state, "audit", "notes.txt"), "w") as f:
            f.write("not a segment\n")
        rc, out = harness.verify_audit(state)
        self.assertEqual(rc, 3, out)
        self.assertRegex(out, r"(?m)^WARNING: .*notes\.txt")
        self.assertIn("INTACT WITH WARNINGS", out)

    def test_edited_record_is_tampered_exit_1(self):
        state = self.copy()
        seg = self.live_segment(state)
        with open(seg, "rb") as f:
            data = f.read()
        i = data.index(b'"exit_code":0')  # a call that succeeded, made to look failed
        with open(seg, "wb") as f:
            f.write(data[:i] + b'"exit_code":1' + data[i + 13:])
        rc, out = harness.verify_audit(state)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"(?m)^TAMPERED: first bad record seq \d+: ")


if __name__ == "__main__":
    unittest.main(verbosity=2)
