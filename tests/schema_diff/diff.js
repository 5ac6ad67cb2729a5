// diff.js: the differential test of gatehouse's argument-schema validator against ajv.
//
// Generates schemas and instances from a fixed seed (SCHEMA_DIFF_SEED, SCHEMA_DIFF_SCHEMAS to
// change them), has the C driver (schema_diff_driver: the real YAML loader, compiler and
// checker) compile each schema and judge each instance, compiles the schema the driver
// *publishes* with ajv (JSON Schema 2020-12, ajv-formats "full") and compares every verdict.
// Any disagreement, or a generated schema that either side refuses, fails the test with the
// case printed. Exit 0: zero disagreements.
//
// ajv is configured as the JSON Schema specification reads, where its defaults approximate it:
// multipleOfPrecision makes multipleOf decimal (19.99 is a multiple of 0.01; by default ajv
// divides in binary floating point and says no). Pairs on which gatehouse is deliberately
// stricter than ajv-formats (README, "Formats") are not generated; they are covered by
// tests/unit/test_policy_schema.c instead, and counted here if a mutation produces one.
"use strict";
const { spawn } = require("child_process");
const readline = require("readline");
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const FORMATS = ["date-time", "date", "email", "uri", "uuid", "ipv4", "ipv6"];
const driverPath = process.argv[2];
let seed = Number(process.env.SCHEMA_DIFF_SEED || 20261202) >>> 0;
const NSCHEMAS = Number(process.env.SCHEMA_DIFF_SCHEMAS || 1500);
const NPATTERNS = Number(process.env.SCHEMA_DIFF_PATTERNS || 1500);

// ---- seeded randomness (mulberry32) -----------------------------------------------------------
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (a) => a[Math.floor(rand() * a.length)];
const chance = (p) => rand() < p;

// ---- pools ------------------------------------------------------------------------------------
// Characters where ECMA-262 and PCRE2 could disagree: line terminators, Unicode spaces, non-ASCII
// digits and letters, astral characters, NUL.
const CHARS = ["a", "b", "c", "z", "A", "Z", "0", "5", "9", "_", "-", ".", "$", "/", "[", "]", " ",
  "\n", "\r", "\t", "\v", "\f", "\u0085", "\u00a0", "\u1680", "\u2003", "\u2028", "\u2029",
  "\u202f", "\u3000", "\ufeff", "\u00e9", "\u00df", "\u01c5", "\u0663", "\u0966", "\u00b2",
  "\ud83d\ude00", "\u0000", "\u0008", "\u00ff", "\u4e2d"];
const PATTERNS = ["^[a-z]+$", "^[A-Za-z0-9_-]{1,8}$", "^\\d{3}$", "^\\d+$", "^\\w+$", "^\\W$", "^.$",
  "^.+$", "^...$", "^\\s*$", "^\\s$", "\\S", "^\\S+$", "^[^\\s]+$", "a|b", "^a|b$", "^(ab)+$",
  "^(?:x|y)*z$", "^[\\u00e9-\\u00ff]+$", "^\\u00e9$", "^\\u{1F600}$", "^\\uD83D\\uDE00$",
  "^[\\p{L}]+$", "\\p{Lu}", "^\\P{L}+$", "^\\p{Nd}$", "^[]$", "^[^]$", "(?=a)", "(?!a)^.",
  "(?<!b)c", "(?<=a)b", "^\\bab\\b", "\\Bb", "^[\\-a]$", "^\\x41$", "^\\cJ$", "^\\0$", "colou?r",
  "^.{2,4}$", "^[\\d\\s]+$", "^[a-c\\s]+$", "\\$", "^\\.$", "^\\/$", "[\\[\\]]", "^[\\b]$", "\\v",
  "\\f", "^[\\w.]+$", "^a{2}$", "^a{2,}$", "^(?<word>[a-z]+)$", "^[^a-z]*$", "^[\\x00-\\x1f]$",
  "\\n$", "^\\r\\n$", "^\\t", "^[\\u2028\\u2029]$", "^[.]$", "^a+?b$", "^(a|ab)(c|bcd)$", ""];
// Strings aimed at the patterns above: each matches some of them, and a variant with a trailing
// newline (PCRE2's $ would accept it; ECMA-262's does not) is often tried.
const PROBES = ["abc", "a", "ab", "abab", "abcd", "abcbcd", "ac", "xyz", "xxz", "z", "ba", "bc", "Ab",
  "A", "AZ09", "a_b-c", "123", "12", "1234", "colour", "color", "", " ", "\t", "\n", "\r\n", "\v",
  "\f", "\b", "\u0000", "\u001f", "\u00a0", "\ufeff", "\u2028", "\u0085", "\u00e9", "\u00e9\u00ff",
  "\u0663", "\u00b2", "\ud83d\ude00", "\u01c5", "Ab\u00e9", "-", "$", ".", "/", "[", "]", "aa",
  "aaa", "a.b", "word", "x y", "abcbcd", "ab\ncd"];
const NUMS = [0, 1, -1, 2, 3, 5, 7, 10, -5, 100, 0.5, -0.5, 1.5, 2.5, 0.1, 0.2, 0.3, 0.25, 0.01,
  19.99, 1e2, 1e-3, 12.345, -2.75, 9007199254740991, -9007199254740991, 4.4e15];
const MULTIPLES = [1, 2, 3, 0.5, 0.25, 0.1, 0.01, 1.5, 2.5, 0.2, 7, 0.05];

const FORMAT_VALUES = {
  "date-time": ["2026-12-02T10:20:30Z", "2026-12-02t10:20:30z", "2026-12-02T10:20:30.123+05:30",
    "2026-12-02T10:20:30-00:00", "1998-12-31T23:59:60Z", "1998-12-31T15:59:60.5-08:00",
    "1998-12-31T22:59:60Z", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-12-02T24:00:00Z", "2026-12-02T10:60:00Z", "2026-12-02T10:20:30", "2026-12-02",
    "2026-12-02T10:20:30.Z", "2026-12-02T10:20:30+24:00", "2026-12-02T10:20Z", "26-12-02T10:20:30Z",
    "2026-12-02T10:20:30+05:60", "2000-02-29T23:59:60+00:00", "２026-12-02T10:20:30Z"],
  date: ["2026-12-02", "2024-02-29", "2023-02-29", "2026-04-31", "2026-00-10", "2026-1-10",
    "2026-12-02T00:00:00Z", "0000-01-01", "9999-12-31", "2100-02-29", "2000-02-29", "20261202"],
  email: ["a@b.co", "joe.bloggs@example.com", "a.b+c@x-y.z", "a..b@c.d", ".a@b.c", "a.@b.c", "a@b",
    "a@-b.c", "a@b-.c", "a@b..c", "@b.c", "a@", "a b@c.d", "\"a\"@b.c", "a@[1.2.3.4]", "A@B.CO",
    "!#$%&'*+/=?^_`{|}~-@x.y", "a@b.c.d.e", "\u00e9@b.c", "a@\u00e9.c", "a@b.c@d.e", "a@1.2"],
  uri: ["http://example.com", "https://u:p@h.example:8080/a/b?q=1#f", "mailto:a@b.c", "urn:isbn:0451",
    "file:///etc/passwd", "a:b", "a://", "http://[::1]:80/", "http://[v1.x]/", "http://[::1.2.3.4]/",
    "http://1.2.3.4/", "http://h/%41%zz", "http://h/%41", "//host/path", "/path", "path",
    "http://h/a b", "http://h/\u00e9", "h:p?q#f#g", "1a:b", "a+b-c.d:x", "http://h:port/",
    "http://[::1/", "http://h/?a=[1]", "tel:+1-201-555-0123", "http://a@b@c/"],
  uuid: ["123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000",
    "123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400",
    "123e4567-e89b-12d3-a456-4266141740000", "g23e4567-e89b-12d3-a456-426614174000",
    "{123e4567-e89b-12d3-a456-426614174000}", "00000000-0000-0000-0000-000000000000"],
  ipv4: ["1.2.3.4", "255.255.255.255", "0.0.0.0", "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4",
    "1.2.3.04", "1.2.3.-1", "1..3.4", " 1.2.3.4", "1.2.3.4\n", "\u0661.2.3.4", "0x1.2.3.4"],
  ipv6: ["::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9", "1::2::3", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "::ffff:1.2.3.4",
    "::ffff:1.2.3.04", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "fe80::1%eth0", "12345::",
    "g::1", "1::1.2.3.4", "::1.2.3", "ABCD:EF01::", "1:2:3:4:5::6:7", "1:2:3:4:5:6:7::8"],
};

// Cases where ajv-formats accepts what the RFC (and gatehouse) refuses; see the README.
function knownStricter(format, s) {
  if (format === "date-time") {
    if (s.length > 10 && /\s/.test(s[10]) && s.split(/t|\s/i).length === 2) return true;
    if (/[+-]\d\d(\d\d)?$/.test(s)) return true; // offset without its colon / minutes
    const m = /T(\d\d):\d\d:60/i.exec(s);
    if (m && Number(m[1]) > 23) return true; // ajv's leap-second rule skips the hour check
  }
  if (format === "uuid" && /^urn:uuid:/i.test(s)) return true;
  if (format === "uri") {
    // ajv's pattern lets a single slash start the authority: "a:/[::1]", and "http://h:port/"
    // read as "/" + an empty host + the path "/h:port/".
    if (/^[a-z][a-z0-9+.-]*:\/\[/i.test(s)) return true;
    const auth = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(s);
    if (auth && !AUTHORITY.test(auth[1])) return true;
    if (/\[[^\]]*(^|[:.])0\d/.test(s)) return true; // leading zeros in an IPv4 part of [...]
  }
  return false;
}
const AUTHORITY = /^(?:(?:[a-z0-9\-._~!$&'()*+,;=:]|%[0-9a-f]{2})*@)?(?:\[[^\]]*\]|(?:[a-z0-9\-._~!$&'()*+,;=]|%[0-9a-f]{2})*)(?::\d*)?$/i;

// ajv divides in binary floating point: beyond 2^50 the quotient of a number by a fractional
// multipleOf is rounded before ajv looks at it (9007199254740991 / 1.5 "is" an integer).
function inexactForAjv(schema, inst) {
  const big = (v) => typeof v === "number" ? Math.abs(v) >= 2 ** 50 :
    v && typeof v === "object" ? Object.values(v).some(big) : false;
  const fractional = (v) => v && typeof v === "object" &&
    ((typeof v.multipleOf === "number" && !Number.isInteger(v.multipleOf)) || Object.values(v).some(fractional));
  return big(inst) && fractional(schema);
}

function randString(maxLen) {
  let s = "";
  const n = int(0, maxLen);
  for (let i = 0; i < n; i++) s += pick(CHARS);
  return s;
}

function mutate(s) {
  const chars = Array.from(s);
  const op = int(0, 3);
  const i = chars.length ? int(0, chars.length - 1) : 0;
  if (op === 0 && chars.length) chars.splice(i, 1);
  else if (op === 1) chars.splice(i, 0, pick(CHARS));
  else if (op === 2 && chars.length) chars[i] = pick(["0", "9", "a", "F", ":", ".", "-", "/", "%", "@"]);
  else chars.reverse();
  return chars.join("");
}

function randValue(depth) {
  const k = int(0, depth > 0 ? 8 : 5);
  switch (k) {
    case 0: return null;
    case 1: return chance(0.5);
    case 2: return pick(NUMS);
    case 3: return int(-3, 12);
    case 4: case 5: return chance(0.3) ? pick(pick(Object.values(FORMAT_VALUES))) : randString(5);
    case 6: case 7: return Array.from({ length: int(0, 3) }, () => randValue(depth - 1));
    default: {
      const o = {};
      for (let i = int(0, 3); i > 0; i--) o[pick(["a", "b", "c", "d", "x"])] = randValue(depth - 1);
      return o;
    }
  }
}

// A policy file cannot hold a NUL character (the YAML reader refuses it), so schemas do not.
function noNul(v) {
  return JSON.parse(JSON.stringify(v).replace(/\\u0000/g, "0"));
}

// ---- schemas ----------------------------------------------------------------------------------
function stringSchema() {
  const s = { type: "string" };
  if (chance(0.3)) s.minLength = int(0, 3);
  if (chance(0.3)) s.maxLength = int(0, 6);
  if (chance(0.4)) s.pattern = pick(PATTERNS);
  else if (chance(0.4)) s.format = pick(FORMATS);
  if (chance(0.1)) delete s.type;
  return s;
}

function numberSchema() {
  const s = { type: chance(0.5) ? "integer" : "number" };
  if (chance(0.4)) s.minimum = pick(NUMS.slice(0, 20));
  if (chance(0.4)) s.maximum = pick(NUMS.slice(0, 20));
  if (chance(0.25)) s.exclusiveMinimum = pick(NUMS.slice(0, 20));
  if (chance(0.25)) s.exclusiveMaximum = pick(NUMS.slice(0, 20));
  if (chance(0.35)) s.multipleOf = pick(MULTIPLES);
  if (chance(0.1)) delete s.type;
  return s;
}

function arraySchema(depth, defs) {
  const s = { type: "array" };
  if (chance(0.5)) s.items = chance(0.1) ? false : schema(depth - 1, defs);
  if (chance(0.3)) s.prefixItems = Array.from({ length: int(1, 2) }, () => schema(depth - 1, defs));
  if (chance(0.3)) s.minItems = int(0, 2);
  if (chance(0.3)) s.maxItems = int(0, 4);
  if (chance(0.3)) s.uniqueItems = chance(0.8);
  return s;
}

function objectSchema(depth, defs) {
  const s = chance(0.85) ? { type: "object" } : {};
  const names = ["a", "b", "c", "d"].filter(() => chance(0.5));
  if (names.length || chance(0.5)) {
    s.properties = {};
    for (const n of names) s.properties[n] = schema(depth - 1, defs);
  }
  const r = int(0, 2);
  if (r === 1) s.additionalProperties = chance(0.5);
  if (r === 2) s.additionalProperties = schema(depth - 1, defs);
  const open = s.additionalProperties !== undefined && s.additionalProperties !== false;
  const pool = open ? ["a", "b", "c", "x"] : names;
  const req = pool.filter(() => chance(0.4));
  if (req.length) s.required = req;
  if (chance(0.2)) s.minProperties = int(0, 2);
  if (chance(0.2)) s.maxProperties = int(0, 3);
  return s;
}

function schema(depth, defs) {
  if (depth <= 0) return pick([stringSchema, numberSchema, () => ({ type: "boolean" }),
    () => ({ type: "null" }), () => true, () => ({})])();
  const k = int(0, 13);
  switch (k) {
    case 0: case 1: return stringSchema();
    case 2: case 3: return numberSchema();
    case 4: return arraySchema(depth, defs);
    case 5: case 6: return objectSchema(depth, defs);
    case 7: return { [pick(["anyOf", "oneOf", "allOf"])]: Array.from({ length: int(1, 3) }, () => schema(depth - 1, defs)) };
    case 8: return { not: schema(depth - 1, defs) };
    case 9: return { const: noNul(randValue(2)) };
    case 10: return { enum: Array.from({ length: int(1, 4) }, () => noNul(randValue(1))) };
    case 11: return { type: pick([["string", "null"], ["integer", "string"], ["number", "boolean"], ["array", "object"]]) };
    case 12: return defs.length ? { $ref: "#/$defs/" + pick(defs) } : pick([true, false, {}]);
    default: return chance(0.5) ? { type: "boolean", default: true, examples: [false] } : false;
  }
}

function rootSchema() {
  const defs = [];
  const root = {};
  if (chance(0.3)) {
    root.$defs = {};
    for (const name of ["p", "q"].filter(() => chance(0.7))) {
      root.$defs[name] = schema(1, []);
      defs.push(name);
    }
  }
  if (chance(0.08)) { // a recursive tree: descends through properties/items, as required
    Object.assign(root, { type: "object", properties: { v: { type: "integer" },
      kids: { type: "array", items: { $ref: "#" } } }, required: ["v"] });
    return root;
  }
  Object.assign(root, schema(3, defs) === true ? {} : schema(3, defs));
  if (typeof root !== "object") return root;
  if (chance(0.1)) root.description = "d";
  return root;
}

// An instance aimed at the schema (then sometimes mutated), so that valid ones are common.
function aimed(s, depth) {
  if (s === true || s === false || s === undefined || depth < 0) return randValue(1);
  if (s.const !== undefined) return chance(0.8) ? s.const : randValue(1);
  if (s.enum) return chance(0.8) ? pick(s.enum) : randValue(1);
  const t = Array.isArray(s.type) ? pick(s.type) : s.type;
  if (s.anyOf || s.oneOf || s.allOf) return aimed(pick(s.anyOf || s.oneOf || s.allOf), depth);
  switch (t) {
    case "string":
      if (s.format) return pick(FORMAT_VALUES[s.format]);
      if (s.pattern !== undefined && chance(0.7)) return pick(PROBES) + (chance(0.25) ? "\n" : "");
      return randString(s.maxLength !== undefined ? s.maxLength + 1 : 6);
    case "integer": return chance(0.8) ? int(-10, 10) : pick(NUMS);
    case "number": return pick(NUMS);
    case "boolean": return chance(0.5);
    case "null": return null;
    case "array": {
      const n = int(0, 4), a = [];
      for (let i = 0; i < n; i++) a.push(aimed((s.prefixItems && s.prefixItems[i]) || s.items, depth - 1));
      if (s.uniqueItems && a.length && chance(0.3)) a.push(a[0]);
      return a;
    }
    case "object": {
      const o = {};
      for (const [k, v] of Object.entries(s.properties || {})) if (chance(0.7)) o[k] = aimed(v, depth - 1);
      for (const k of s.required || []) if (!(k in o) && chance(0.8)) o[k] = randValue(1);
      if (chance(0.2)) o[pick(["x", "y"])] = randValue(1);
      return o;
    }
    default: return randValue(2);
  }
}

// JSON text in which integral numbers are sometimes written 1.0 or 1e0: JSON Schema says those
// are integers too, and the C side must see them as written.
function ser(v) {
  if (typeof v === "number") {
    if (Number.isInteger(v) && Math.abs(v) < 1e15 && chance(0.25)) return v + (chance(0.5) ? ".0" : "e0");
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return "[" + v.map(ser).join(", ") + "]";
  if (v && typeof v === "object") return "{" + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ": " + ser(x)).join(", ") + "}";
  return JSON.stringify(v);
}

function stringsIn(v, out = []) {
  if (typeof v === "string") out.push(v);
  else if (v && typeof v === "object") for (const x of Object.values(v)) stringsIn(x, out);
  return out;
}

function formatsIn(s, out = []) {
  if (s && typeof s === "object") {
    if (typeof s.format === "string") out.push(s.format);
    for (const v of Object.values(s)) formatsIn(v, out);
  }
  return out;
}

// ---- random patterns ----------------------------------------------------------------------------
// Patterns built from the pieces where ECMA-262 and PCRE2 could part ways. JavaScript's own
// RegExp (with the u flag, as ajv compiles patterns) is the reference: a pattern it refuses must
// be refused by gatehouse too; one both accept must match the same strings.
const ATOMS = ["a", "b", "z", "A", "0", "\u00e9", "\u4e2d", "\ud83d\ude00", " ", ".", "\\d", "\\D",
  "\\w", "\\W", "\\s", "\\S", "\\n", "\\r", "\\t", "\\v", "\\f", "\\0", "\\x41", "\\u00e9",
  "\\u{1F600}", "\\uD83D\\uDE00", "\\cJ", "\\p{L}", "\\P{L}", "\\p{Nd}", "\\p{Lu}", "\\.", "\\$",
  "\\/", "\\[", "\\]", "\\(", "\\{", "\\b", "\\B", "^", "$", "-", "_", "\u2028", "\n"];
const BAD_ATOMS = ["{", "}", "]", "\\-", "\\e", "\\A", "\\1", "\\k<n1>", "\\p{Greek}", "\\z"];
const CLASS_ITEMS = ["a", "z", "0", "9", "-", "^", "\\d", "\\w", "\\s", "\\S", "\\D", "\\W", "\\b",
  "\\-", "\\]", "[", ":", ".", "\u00e9", "\\u00e9", "\\u{1F600}", "\\n", "\\p{L}", "a-z", "0-9", "\\x00-\\x1f",
  "\u00e0-\u00ff", " "];
const QUANTS = ["*", "+", "?", "{2}", "{1,2}", "{0,}", "*?", "+?", "??", "{1,3}?"];
const BAD_QUANTS = ["{2,1}", "*+", "{", "++", "{,2}"];

// JSON text with every non-ASCII character escaped, so that a disagreement can be read.
function ascii(v) {
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function randPattern(depth) {
  let p = "";
  for (let n = int(1, 4); n > 0; n--) {
    const k = int(0, 9);
    let assertion = false;
    if (k <= 4) {
      const a = chance(0.05) ? pick(BAD_ATOMS) : pick(ATOMS);
      assertion = ["^", "$", "\\b", "\\B"].includes(a);
      p += a;
    }
    else if (k <= 6) {
      let items = "";
      for (let i = int(0, 3); i > 0; i--) items += pick(CLASS_ITEMS);
      p += "[" + (chance(0.3) ? "^" : "") + items + "]";
    } else if (k <= 8 && depth > 0) {
      const open = chance(0.05) ? pick(["(?i)", "(*", "(?>", "(?P<n>"]) :
        pick(["(", "(", "(?:", "(?=", "(?!", "(?<=", "(?<!", "(?<n" + int(0, 9) + ">"]);
      p += open + randPattern(depth - 1) + (chance(0.5) ? "|" + randPattern(depth - 1) : "") + (chance(0.95) ? ")" : "");
    } else p += "|";
    if (chance(assertion ? 0.03 : 0.3)) p += chance(0.05) ? pick(BAD_QUANTS) : pick(QUANTS);
  }
  return p;
}

async function patterns(ask, count) {
  let pairs = 0, bothRefused = 0, onlyOursRefused = 0, failures = 0;
  for (let n = 0; n < count; n++) {
    const pat = randPattern(2);
    let re = null;
    try { re = new RegExp(pat, "u"); } catch (e) { re = null; }
    const subjects = [];
    for (let i = 0; i < 6; i++) subjects.push(chance(0.6) ? pick(PROBES) + (chance(0.2) ? "\n" : "") : randString(4));
    const out = await ask({ type: "string", pattern: pat }, subjects);
    if (out.compile_errors) {
      if (re) onlyOursRefused++; else bothRefused++;
      if (re && process.env.SCHEMA_DIFF_VERBOSE) console.log("refused: /" + pat + "/: " + out.compile_errors[0]);
      continue;
    }
    if (!re || out.published.pattern !== pat) {
      failures++;
      console.log("FAIL: gatehouse " + (re ? "published " + ascii(out.published.pattern) + " for " :
        "accepted a pattern ECMA-262 refuses: ") + ascii(pat));
      continue;
    }
    subjects.forEach((str, i) => {
      pairs++;
      if (re.test(str) !== out.valid[i]) {
        failures++;
        console.log("DISAGREE: pattern " + ascii(pat) + " (u) on " + ascii(str) + ": gatehouse " + out.valid[i] +
          ", ECMA-262 " + !out.valid[i] + (out.errors[i] ? " (" + out.errors[i] + ")" : ""));
      }
    });
  }
  console.log(`${pairs} (pattern, string) pairs from ${count} random patterns: ${failures} disagreement(s); ` +
    `${bothRefused} patterns refused by both, ${onlyOursRefused} accepted by ECMA-262 but refused by ` +
    "gatehouse (backreferences, variable-length lookbehind, ...: refused at load, never misread)");
  return failures;
}

// ---- run ---------------------------------------------------------------------------------------
async function main() {
  const ajv = new Ajv2020({ strict: false, allErrors: false, multipleOfPrecision: 9 });
  addFormats(ajv, FORMATS);
  const driver = spawn(driverPath, [], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = readline.createInterface({ input: driver.stdout })[Symbol.asyncIterator]();
  const ask = async (schema, instances) => {
    driver.stdin.write('{"schema": ' + JSON.stringify(schema) + ', "instances": ' + JSON.stringify(instances) + "}\n");
    return JSON.parse((await lines.next()).value);
  };
  let pairs = 0, valid = 0, stricter = 0, inexact = 0, failures = 0;
  for (let n = 0; n < NSCHEMAS; n++) {
    const s = rootSchema();
    const instances = [];
    for (let i = int(3, 7); i > 0; i--) {
      let inst = chance(0.75) ? aimed(s, 3) : randValue(3);
      if (typeof inst === "string" && chance(0.3)) inst = mutate(inst);
      instances.push(inst);
    }
    const fmts = formatsIn(s);
    const kept = instances.filter((x) => {
      if (stringsIn(x).some((str) => fmts.some((f) => knownStricter(f, str)))) stricter++;
      else if (inexactForAjv(s, x)) inexact++;
      else return true;
      return false;
    });
    const texts = kept.map(ser);
    driver.stdin.write('{"schema": ' + ser(s) + ', "instances": [' + texts.join(", ") + "]}\n");
    const { value: line } = await lines.next();
    const out = JSON.parse(line);
    if (out.compile_errors) {
      console.log("FAIL: gatehouse refused a generated schema:\n  schema: " + ser(s) + "\n  " + out.compile_errors.join("\n  "));
      failures++;
      continue;
    }
    let validate;
    try {
      validate = ajv.compile(out.published);
    } catch (e) {
      console.log("FAIL: ajv refused the published schema: " + e.message + "\n  published: " + JSON.stringify(out.published));
      failures++;
      continue;
    }
    kept.forEach((inst, i) => {
      const theirs = validate(JSON.parse(texts[i]));
      pairs++;
      if (theirs) valid++;
      if (theirs !== out.valid[i]) {
        failures++;
        console.log("DISAGREE: gatehouse " + (out.valid[i] ? "valid" : "invalid (" + out.errors[i] + ")") +
          ", ajv " + (theirs ? "valid" : "invalid " + JSON.stringify(validate.errors)) +
          "\n  schema:    " + ser(s) + "\n  published: " + JSON.stringify(out.published) + "\n  instance:  " + texts[i]);
      }
    });
  }
  failures += await patterns(ask, NPATTERNS);
  const exited = new Promise((resolve) => driver.on("exit", (code, signal) => resolve(signal || code)));
  driver.stdin.end();
  const status = await exited; // under ASan, a leak or an error report makes this non-zero
  if (status !== 0) {
    console.log("FAIL: the driver exited with " + status);
    failures++;
  }
  console.log(`${pairs} (schema, instance) pairs from ${NSCHEMAS} schemas: ${valid} valid, ` +
    `${pairs - valid} invalid by ajv; ${failures} disagreement(s) or refusal(s); ` +
    `not compared: ${stricter} pair(s) where gatehouse is deliberately stricter than ajv-formats, ` +
    `${inexact} where ajv's binary division is inexact`);
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
