"""The wasm tier through the real `gatehouse serve`: the example tools compiled to
WebAssembly (wasm-jsonq, wasm-textstats) answer over the HTTP API, and modules that trap or
spin end with status trapped / resource_limit instead of hurting the gateway. The WASI
conformance program, a program using sleep, a wasi_unstable module and a stock Lua 5.4
run through the gateway in real workers; the tier refuses to start without its worker
program, and a worker's failed setup step reaches the caller by name."""
import json
import os
import re
import shutil
import sys
import tempfile
import threading
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


CONFORMANCE_POLICY = """
name: %s
description: WASI conformance checks.
module: tools/wasm-wasi-conformance.wasm
isolation: wasm
limits: {wall_timeout: 20s}
filesystem:
  workspace: {size_mb: 8}
  read_only: [%s]
arguments:
  type: object
  properties:
    mode: {type: string, enum: [check, sleep, raise]}
"""

UNSTABLE_POLICY = """
name: wasm-unstable
description: A module importing wasi_unstable only.
module: tools/wasm-wasi-unstable.wasm
isolation: wasm
filesystem: {workspace: {size_mb: 8}}
"""

LUA_POLICY = """
name: lua
description: Stock Lua 5.4 running a script from a read-only directory.
module: tools/lua54.wasm
isolation: wasm
limits: {wall_timeout: 20s, memory_mb: 64}
env: {LUA_INIT: "@%s/main.lua"}
filesystem:
  read_only: [%s]
pool: {size: 3}
arguments:
  type: object
  properties:
    name: {type: string, maxLength: 64}
"""

LUA_SCRIPT = """
local args = io.read("a")
local name = args:match('"name":"([^"]*)"') or "nobody"
local t = {}
for i = 1, 10 do t[#t + 1] = i * i end
print(string.format("hello, %s: %d squares summing to %d", name, #t,
      (function() local s = 0 for _, v in ipairs(t) do s = s + v end return s end)()))
os.exit(0)
"""


def built(name):
    return os.path.exists(os.path.join(TOOLS, name))


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
        # A directory the tool may read (through a read-only preopen), readable by its uid.
        cls.ro = tempfile.mkdtemp(prefix="gh-wasm-ro-")
        os.chmod(cls.ro, 0o755)
        for fname, text in (("ro.txt", "read-only\n"), ("main.lua", LUA_SCRIPT)):
            with open(os.path.join(cls.ro, fname), "w") as f:
                f.write(text)
            os.chmod(os.path.join(cls.ro, fname), 0o644)
        for name in ("wasm-wasi-conformance.wasm", "wasm-wasi-unstable.wasm", "lua54.wasm"):
            if built(name):
                shutil.copy(os.path.join(TOOLS, name), os.path.join(cls.dir, "tools"))
        if built("wasm-wasi-conformance.wasm"):
            harness.write_policy(cls.dir, "wasi-conformance", CONFORMANCE_POLICY % ("wasi-conformance", cls.ro))
        if built("wasm-wasi-unstable.wasm"):
            harness.write_policy(cls.dir, "wasm-unstable", UNSTABLE_POLICY)
        if built("lua54.wasm"):
            harness.write_policy(cls.dir, "lua", LUA_POLICY % (cls.ro, cls.ro))
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
        shutil.rmtree(cls.ro, ignore_errors=True)

    def need(self, module):
        if not built(module):
            self.skipTest("%s was not built (no wasm32-wasi toolchain or Lua source)" % module)

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

    def test_wasi_conformance_passes_through_the_gateway(self):
        self.need("wasm-wasi-conformance.wasm")
        body = self.gw.call("wasi-conformance", {"mode": "check"}).json()
        failures = [l for l in body["stdout"].splitlines() if l.startswith("not ok")]
        self.assertEqual(failures, [], body["stdout"][-2000:])
        self.assertEqual(body["status"], "succeeded", body)
        self.assertRegex(body["stdout"], r"\n\d+ passed, 0 failed\n")
        # The call's workspace (files, directories, links it made) is gone with the call.
        ws_root = os.path.join(self.gw.state_dir, "wasm-workspaces")
        self.assertEqual(os.listdir(ws_root), [])

    def test_program_using_sleep_runs(self):
        self.need("wasm-wasi-conformance.wasm")
        body = self.gw.call("wasi-conformance", {"mode": "sleep"}).json()
        self.assertEqual(body["status"], "succeeded", body)
        self.assertEqual(body["stdout"], "slept 20 ms\n")

    def test_proc_raise_traps_the_call(self):
        self.need("wasm-wasi-conformance.wasm")
        body = self.gw.call("wasi-conformance", {"mode": "raise"}).json()
        self.assertEqual(body["status"], "trapped", body)
        self.assertIn("proc_raise: signal 6", body.get("detail", ""), body)
        self.assertNotIn("proc_raise returned", body["stdout"])

    def test_wasi_unstable_module_runs(self):
        self.need("wasm-wasi-unstable.wasm")
        body = self.gw.call("wasm-unstable", {}).json()
        self.assertEqual(body["status"], "succeeded", body)
        self.assertIn("wasi_unstable: all passed", body["stdout"])
        self.assertNotIn("not ok", body["stdout"])

    def test_stock_lua_runs_a_script(self):
        self.need("lua54.wasm")
        body = self.gw.call("lua", {"name": "gate"}).json()
        self.assertEqual(body["status"], "succeeded", body)
        self.assertEqual(body["stdout"], "hello, gate: 10 squares summing to 385\n")

    def test_concurrent_calls_share_a_pool_of_its_size(self):
        self.need("lua54.wasm")
        results = []

        def client():
            for _ in range(3):
                results.append(self.gw.call("lua", {"name": "x"}).json()["status"])

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, ["succeeded"] * 18)
        metrics = self.gw.request("GET", "/metrics").body.decode()
        size = re.search(r'^gatehouse_wasm_pool_size\{tool="lua"\} (\d+)$', metrics, re.M)
        idle = re.search(r'^gatehouse_wasm_pool_idle\{tool="lua"\} (\d+)$', metrics, re.M)
        self.assertEqual(size.group(1), "3", metrics)
        self.assertLessEqual(int(idle.group(1)), 3)


class WasmTierSetup(unittest.TestCase):
    """How the tier fails: never a weaker sandbox, always naming what is wrong."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gh-wasm-setup-")
        os.makedirs(os.path.join(self.dir, "tools"))
        with open(os.path.join(self.dir, "tools", "wasm-trap.wasm"), "wb") as f:
            f.write(TRAP_WASM)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_missing_worker_program_refuses_the_tier(self):
        harness.write_policy(self.dir, "wasm-trap", RAW_POLICY % ("wasm-trap", "wasm-trap"))
        # A copy of the gateway with no gatehouse-wasm-worker beside it nor in ../libexec.
        alone = tempfile.mkdtemp(prefix="gh-wasm-alone-")
        os.makedirs(os.path.join(alone, "bin"))
        binary = os.path.join(alone, "bin", "gatehouse")
        shutil.copy2(harness.GATEHOUSE, binary)
        gw = harness.Gateway(self.dir, binary=binary)
        try:
            with self.assertRaises(RuntimeError) as cm:
                gw.start()
            self.assertIn("gatehouse-wasm-worker not found", str(cm.exception))
            self.assertIn("isolation 'wasm' is not available", str(cm.exception))
        finally:
            gw.stop()
            gw.cleanup()
            shutil.rmtree(alone, ignore_errors=True)

    def test_worker_setup_failure_names_the_step(self):
        if os.geteuid() != 0:
            self.skipTest("needs root: workers drop to the tool identity only as root")
        secret = tempfile.mkdtemp(prefix="gh-wasm-secret-")  # 0700 root: the tool cannot open it
        try:
            harness.write_policy(self.dir, "wasm-trap", RAW_POLICY % ("wasm-trap", "wasm-trap") +
                                 "filesystem: {read_only: [%s]}\n" % secret)
            with harness.Gateway(self.dir) as gw:
                r = gw.call("wasm-trap", {})
                self.assertEqual(r.status, 500, r.body)
                err = r.json()["error"]
                self.assertEqual(err["code"], "sandbox_setup_failed")
                self.assertIn("open read-only directory %s: EACCES" % secret, err["message"])
        finally:
            os.rmdir(secret)


if __name__ == "__main__":
    unittest.main()
