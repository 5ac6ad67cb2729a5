"""Every example policy in policies/ loads, passes `gatehouse policy check`, and runs:
the gateway is started on the assembled build/policies directory with the
repository's gatehouse.yaml (what scripts/serve.sh does), and each tool is
called with the arguments below and must end as expected. A new example
policy without an entry here fails this test."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

# tool -> (arguments, expected status, a substring expected in stdout)
EXAMPLES = {
    "echo": ({"text": "hi"}, "succeeded", "hi"),
    "container-echo": ({"text": "from a container"}, "succeeded", "from a container"),
    "gvisor-echo": ({"text": "from gVisor"}, "succeeded", "from gVisor"),
    "microvm-echo": ({"text": "from a microVM"}, "succeeded", "from a microVM"),
    "wasm-jsonq": ({"json": {"items": [{"name": "gatehouse"}]}, "path": "$.items[0].name"},
                   "succeeded", "gatehouse"),
    "wasm-textstats": ({"text": "one two three\nfour"}, "succeeded", "4"),
    # Irreversible: held until the demo approver of gatehouse.yaml approves it.
    "ledger": ({"account": "acme", "amount": 1250, "memo": "example"}, "approval", "acme"),
}
CONFIG = os.path.join(harness.SOURCE_DIR, "gatehouse.yaml")
DEMO_TOKEN = "demo-approver-" + os.urandom(12).hex()  # gatehouse.yaml reads it from the env


class ExamplesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.names = sorted(f[:-5] for f in os.listdir(harness.BUILD_POLICIES) if f.endswith(".yaml"))
        cls.ledger_dir = "/var/tmp/gatehouse-ledger"
        cls.gw = harness.Gateway(harness.BUILD_POLICIES, extra_args=["--config", CONFIG],
                                 env={"GATEHOUSE_DEMO_APPROVER_TOKEN": DEMO_TOKEN}).start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()

    def test_every_example_has_an_entry(self):
        self.assertEqual([n for n in self.names if n not in EXAMPLES], [],
                         "add the new example policy to EXAMPLES")

    def test_policy_check_passes(self):
        p = subprocess.run([harness.GATEHOUSE, "policy", "check", harness.BUILD_POLICIES],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_all_examples_are_published(self):
        tools = {t["name"] for t in self.gw.request("GET", "/v1/tools").json()["tools"]}
        self.assertEqual(tools, set(self.names))

    def test_each_example_runs(self):
        for name in self.names:
            args, expected, text = EXAMPLES[name]
            with self.subTest(tool=name):
                r = self.gw.call(name, args)
                if expected == "approval":
                    self.run_approved(r, text)
                    continue
                self.assertEqual(r.status, 200, r.body)
                j = r.json()
                self.assertEqual(j["status"], expected, j)
                self.assertIn(text, j["stdout"])

    def test_installed_layout_runs_every_tier(self):
        """cmake --install puts the binary, every helper program and the manual page where the
        installed gateway finds them: each example runs from the installed binary."""
        prefix = tempfile.mkdtemp(prefix="gh-install-")
        os.chmod(prefix, 0o755)  # as /usr/local is: wasm workers exec their program as the tool uid
        try:
            p = subprocess.run(["cmake", "--install", harness.BUILD_DIR, "--prefix", prefix],
                               capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            for rel in ("bin/gatehouse", "share/man/man1/gatehouse.1",
                        "libexec/gatehouse/gatehouse-wasm-worker",
                        "libexec/gatehouse/gatehouse-ct-helper",
                        "libexec/gatehouse/gatehouse-gvisor-helper",
                        "libexec/gatehouse/gatehouse-microvm-init"):
                self.assertTrue(os.path.exists(os.path.join(prefix, rel)), rel)
            binary = os.path.join(prefix, "bin", "gatehouse")
            gw = harness.Gateway(harness.BUILD_POLICIES, binary=binary,
                                 extra_args=["--config", CONFIG],
                                 env={"GATEHOUSE_DEMO_APPROVER_TOKEN": DEMO_TOKEN})
            with gw:
                for name in self.names:
                    args, expected, text = EXAMPLES[name]
                    if expected == "approval":
                        continue
                    with self.subTest(tool=name):
                        j = gw.call(name, args).json()
                        self.assertEqual(j.get("status"), expected, j)
                        self.assertIn(text, j["stdout"])
        finally:
            shutil.rmtree(prefix, ignore_errors=True)

    def test_zz_metrics_pass_promtool(self):
        """After every example ran (tests run in name order), /metrics has a # HELP and a
        # TYPE for every family and passes Prometheus's own checker."""
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool not installed (Debian package prometheus)")
        self.gw.call("echo", {"text": "metrics"})
        text = self.gw.request("GET", "/metrics").body
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
        self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode())
        self.assertEqual((p.stdout + p.stderr).decode().strip(), "")
        families = {line.split()[0].split("{")[0] for line in text.decode().splitlines()
                    if line and not line.startswith("#")}
        for f in families:
            base = f
            for suffix in ("_bucket", "_sum", "_count"):
                if f.endswith(suffix) and ("# TYPE %s histogram" % f[:-len(suffix)]) in text.decode():
                    base = f[:-len(suffix)]
            self.assertIn("# HELP %s " % base, text.decode(), base)
            self.assertIn("# TYPE %s " % base, text.decode(), base)

    def run_approved(self, r, text):
        self.assertEqual(r.status, 202, r.body)
        held = r.json()
        self.assertEqual(held["status"], "pending_approval")
        call_id = held["call_id"]
        rec = self.gw.request("GET", "/v1/approvals?call_id=" + call_id,
                              headers={"authorization": "Bearer " + DEMO_TOKEN})
        self.assertEqual(rec.status, 200, rec.body)
        args_sha = held.get("args_sha256") or rec.json()["approvals"][0]["args_sha256"]
        d = self.gw.request("POST", "/v1/approvals/" + call_id,
                            {"decision": "approve", "approver": "demo", "reason": "example",
                             "args_sha256": args_sha},
                            headers={"authorization": "Bearer " + DEMO_TOKEN})
        self.assertEqual(d.status, 200, d.body)
        done = self.gw.request("GET", "/v1/calls/%s?wait=30s" % call_id).json()
        self.assertEqual(done["status"], "succeeded", done)
        self.assertIn(text, done["stdout"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
