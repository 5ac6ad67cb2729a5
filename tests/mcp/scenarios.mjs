// The official MCP TypeScript SDK client against a real gateway, over streamable HTTP
// (MODE=http) or through `gatehouse mcp` over stdio (MODE=stdio). Run by
// tests/integration/test_mcp.py, which starts the gateway, writes the policies and checks the
// audit log afterwards. Prints one JSON line of what it saw (call ids for the audit checks);
// exits 1 at the first failed check.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";

const { MODE, GW_URL, GATEHOUSE, AGENT_TOKEN, APPROVER_TOKEN } = process.env;

function transport(token) {
  if (MODE === "stdio")
    return new StdioClientTransport({
      command: GATEHOUSE,
      args: ["mcp", "--url", GW_URL, "--token-env", "GH_MCP_TOKEN"],
      env: { PATH: "/usr/bin:/bin", GH_MCP_TOKEN: token },
      stderr: "inherit",
    });
  return new StreamableHTTPClientTransport(new URL(GW_URL + "/mcp"), {
    requestInit: { headers: { Authorization: "Bearer " + token } },
  });
}

async function connect(token) {
  const client = new Client({ name: "gatehouse-test", version: "1.0.0" });
  await client.connect(transport(token));
  return client;
}

async function api(method, path, token, body) {
  const r = await fetch(GW_URL + path, {
    method,
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, json: await r.json() };
}

async function approve(callId) {
  const rec = await api("GET", "/v1/calls/" + callId, AGENT_TOKEN);
  assert.equal(rec.json.status, "pending_approval", JSON.stringify(rec.json));
  const d = await api("POST", "/v1/approvals/" + callId, APPROVER_TOKEN, {
    decision: "approve",
    args_sha256: rec.json.approval.args_sha256,
  });
  assert.equal(d.status, 200, JSON.stringify(d.json));
}

// Call the held tool; resolve `held` with the call id from the first progress message.
function heldCall(client, args, options = {}) {
  let gotId;
  const held = new Promise((resolve) => (gotId = resolve));
  const progress = [];
  const result = client.callTool({ name: "ledger", arguments: args }, undefined, {
    ...options,
    timeout: 120000,
    onprogress: (p) => {
      progress.push(p);
      const m = /c_[0-9a-f]+/.exec(p.message || "");
      if (progress.length === 1) gotId(m ? m[0] : null);
    },
  });
  return { held, result, progress };
}

const out = { mode: MODE };

// Authentication failure: a wrong token cannot even initialize.
await assert.rejects(connect("wrong-token-0123456789abcdef"), (e) => {
  out.auth_error = String(e.message || e);
  return true;
});

const client = await connect(AGENT_TOKEN);
assert.equal(client.getServerVersion().name, "gatehouse");
out.protocol = LATEST_PROTOCOL_VERSION;

// tools/list: the granted tools, their schemas and annotations.
const { tools } = await client.listTools();
const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
assert.deepEqual(Object.keys(byName).sort(), ["bytes", "echo", "fail", "ledger"]);
assert.equal(byName.ledger.annotations.destructiveHint, true);
assert.equal(byName.echo.annotations.destructiveHint, false);
assert.equal(byName.ledger._meta["gatehouse/approval_required"], true);
assert.equal(byName.echo._meta["gatehouse/isolation"], "process");
assert.match(byName.ledger.description, /approval/);
assert.deepEqual(byName.echo.inputSchema.required, ["text"]);

// A call that runs.
const ok = await client.callTool({ name: "echo", arguments: { text: "hello mcp" } });
assert.equal(ok.isError, false);
assert.match(ok.content[0].text, /hello mcp/);

// Output that is not UTF-8 comes as a base64 blob.
const bin = await client.callTool({ name: "bytes", arguments: {} });
assert.equal(bin.isError, false, JSON.stringify(bin));
assert.equal(bin.content[0].type, "resource");
assert.deepEqual([...Buffer.from(bin.content[0].resource.blob, "base64")], [0xff, 0xfe]);

// A schema violation: a tool error naming the JSON path.
const bad = await client.callTool({ name: "echo", arguments: { text: 5 } });
assert.equal(bad.isError, true);
assert.match(bad.content[0].text, /invalid_arguments.*\$\.text/);

// A failing tool: isError with the exit code and what it wrote.
const fail = await client.callTool({ name: "fail", arguments: {} });
assert.equal(fail.isError, true);
assert.match(fail.content.map((c) => c.text).join("\n"), /exit code 3[\s\S]*boom/);

// An unknown tool is a protocol error.
await assert.rejects(client.callTool({ name: "no-such-tool", arguments: {} }), /no tool named/);

// A held call approved while the client waits: progress first (with the call id), then the
// result of its one run.
{
  const h = heldCall(client, { account: "acme", amount: 42 });
  const id = await h.held;
  assert.ok(id, "the first progress message names the call");
  await approve(id);
  const r = await h.result;
  assert.equal(r.isError, false, JSON.stringify(r));
  assert.match(r.content[0].text, /"account":"acme"/);
  out.approved_call = id;
  out.progress_seen = h.progress.length;
}

// Cancellation of a held call withdraws it.
{
  const ac = new AbortController();
  const h = heldCall(client, { account: "cancel", amount: 7 }, { signal: ac.signal });
  const id = await h.held;
  ac.abort("changed my mind");
  await assert.rejects(h.result);
  for (let i = 0; i < 400; i++) {
    const rec = await api("GET", "/v1/calls/" + id, AGENT_TOKEN);
    if (rec.json.status === "withdrawn") break;
    await new Promise((r) => setTimeout(r, 25));
  }
  const rec = await api("GET", "/v1/calls/" + id, AGENT_TOKEN);
  assert.equal(rec.json.status, "withdrawn", JSON.stringify(rec.json));
  out.cancelled_call = id;
}

// A held call whose client goes away: the hold stays (checked by the test afterwards).
{
  const h = heldCall(client, { account: "gone", amount: 9 });
  const id = await h.held;
  h.result.catch(() => {});
  await client.close();
  out.disconnected_call = id;
}

console.log(JSON.stringify(out));
