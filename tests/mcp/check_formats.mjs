// Provider formats and the OpenAPI document, checked by the providers' own packages:
// - OpenAI: the tool list type-checks as ChatCompletionTool[] (package `openai`), by tsc;
// - Anthropic: as Tool[] (package `@anthropic-ai/sdk`), by tsc;
// - MCP: parsed by the MCP SDK's own ListToolsResultSchema (zod);
// - OpenAPI: validated as OpenAPI 3.1 by @seriousme/openapi-schema-validator.
// Usage: node check_formats.mjs WORKDIR (GW_URL, AGENT_TOKEN in the environment).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { ListToolsResultSchema } from "@modelcontextprotocol/sdk/types.js";
import { Validator } from "@seriousme/openapi-schema-validator";

const { GW_URL, AGENT_TOKEN } = process.env;
const work = process.argv[2];
const get = async (path) => {
  const r = await fetch(GW_URL + path, { headers: { Authorization: "Bearer " + AGENT_TOKEN } });
  assert.equal(r.status, 200, path);
  return r.json();
};

const openai = await get("/v1/tools?format=openai");
const anthropic = await get("/v1/tools?format=anthropic");
const mcp = await get("/v1/tools?format=mcp");
ListToolsResultSchema.parse({ tools: mcp.tools });

const ts = `import type { ChatCompletionTool } from "openai/resources/chat/completions";
import type { Tool } from "@anthropic-ai/sdk/resources/messages";
export const openai: ChatCompletionTool[] = ${JSON.stringify(openai.tools)};
export const anthropic: Tool[] = ${JSON.stringify(anthropic.tools)};
`;
writeFileSync(work + "/formats.ts", ts);
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck", "--target", "es2022",
  "--module", "nodenext", "--moduleResolution", "nodenext", work + "/formats.ts"], { stdio: "inherit" });

const strict = Object.fromEntries(openai.tools.map((t) => [t.function.name, t.function.strict === true]));
const doc = await (await fetch(GW_URL + "/v1/openapi.json")).json();
const v = new Validator();
const res = await v.validate(doc);
assert.ok(res.valid, JSON.stringify(res.errors, null, 1));
assert.equal(v.version, "3.1");
console.log(JSON.stringify({ strict, openapi_valid: res.valid, openapi_version: v.version }));
