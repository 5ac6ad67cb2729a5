"""The wasm tier through the real `gatehouse serve`: the example tools compiled to
WebAssembly (wasm-jsonq, wasm-textstats) answer over the HTTP API, and modules that trap or
spin end with status trapped / resource_limit instead of hurting the gateway."""
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

SRC_POLICIES = os.path.join(harness.SOURCE_DIR, "policies")
TOOLS = os.path.join(harness.BUILD_POLICIES, "tools")
# (module (memory (export "memory") 1) (func (export "_start") unreachable))
TRAP_WASM = bytes.fromhex("0061736d01000000010401600000030201000503010001071302066d656d6f72790200065f737461727400000a05010300000b")
# (module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))
SPIN_WASM = bytes.fromhex("0061736d01000000010401600000030201000503010001071302066d656d6f72790200065f737461727400000a0901070003400c000b0b")

RAW_POLICY = """
name: %s
description: A raw test module.
module: tools/%s.wasm
isolation: wasm
limits: {wall_timeout: 10s, fuel: 2000000}
"""


def setUpModule():
    for name in ("wasm-jsonq", "wasm-textstats"):
        if not os.path.exists(os.path.join(TOOLS, name + ".wasm")):
            harness.skip("%s.wasm was not built (no clang --target=wasm32-wasi toolchain)" % name)


class WasmTier(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="gh-wasm-policies-")
        os.makedirs(os.path.join(cls.dir, "tools"))
        for name in ("wasm-jsonq", "wasm-textstats"):
            shutil.copy(os.path.join(SRC_POLICIES, name + ".yaml"), cls.dir)
            shutil.copy(os.path.join(TOOLS, name + ".wasm"), os.path.join(cls.dir, "tools"))
        for name, data in (("wasm-trap", TRAP_WASM), ("wasm-spin", SPIN_WASM)):
            with open(os.path.join(cls.dir, "tools", name + ".wasm"), "wb") as f:
                f.write(data)
            harness.write_policy(cls.dir, name, RAW_POLICY % (name, name))
        cls.gw = harness.Gateway(cls.dir)
        cls.gw.start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.gw.cleanup()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_textstats_counts_words(self):
        r = self.gw.call("wasm-textstats", {"text": "hello w\u00f6rld\nbye"})
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertEqual(body["status"], "succeeded")
        self.assertEqual(body["isolation"], "wasm")
        stats = json.loads(body["stdout"])
        self.assertEqual(stats["words"], 3)
        self.assertEqual(stats["lines"], 2)
        self.assertEqual(stats["chars"], 15)

    def test_jsonq_selects_a_value(self):
        r = self.gw.call("wasm-jsonq", {"json": {"a": [1, {"b": [True, "x"]}]}, "path": "$.a[1].b[1]"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["status"], "succeeded")
        self.assertEqual(json.loads(r.json()["stdout"]), "x")

    def test_jsonq_missing_path_fails_with_exit_code(self):
        r = self.gw.call("wasm-jsonq", {"json": {"a": 1}, "path": "$.nope"})
        body = r.json()
        self.assertEqual(body["status"], "failed")
        self.assertEqual(body["exit_code"], 1)
        self.assertIn("no such member", body["stderr"])

    def test_trap_is_reported_by_name(self):
        body = self.gw.call("wasm-trap", {}).json()
        self.assertEqual(body["status"], "trapped", body)

    def test_infinite_loop_runs_out_of_fuel(self):
        body = self.gw.call("wasm-spin", {}).json()
        self.assertEqual(body["status"], "resource_limit", body)
        # the gateway (and the replaced worker) still serve calls afterwards
        again = self.gw.call("wasm-textstats", {"text": "a b"}).json()
        self.assertEqual(again["status"], "succeeded")


if __name__ == "__main__":
    unittest.main()
