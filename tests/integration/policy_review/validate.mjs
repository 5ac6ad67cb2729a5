// Independent validators for test_policy_review.py (none of gatehouse's code is used):
//
//   node validate.mjs policy SCHEMA FILE...   policy YAML files against policy.schema.json
//                                             (ajv, JSON Schema 2020-12, with ajv-formats)
//   node validate.mjs sarif FILE...           SARIF logs against the SARIF 2.1.0 schema that
//                                             Microsoft's SARIF SDK ships (ajv, draft-04)
//   node validate.mjs yaml FILE...            plain YAML 1.2 files (the CI workflow): parsed
//                                             back as JSON in "data"
//
// Prints one JSON array: [{"file", "valid", "errors"}]. YAML is read with the scalar rules the
// policy loader applies (YAML 1.2's JSON schema, plus ~ as null): only unquoted true/false
// are booleans, only decimal numbers are numbers, so `yes`, `True` or `0x10` stay strings.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import AjvDraft04 from 'ajv-draft-04';
import addFormats from 'ajv-formats';

const here = path.dirname(fileURLToPath(import.meta.url));
const SARIF_SCHEMA = path.join(here, 'node_modules', '@microsoft', 'jest-sarif', 'lib', 'schemas',
                               'sarif-2.1.0-rtm.5.json');

const scalar = (tag, test, resolve) => ({
  identify: () => false, default: true, tag: 'tag:yaml.org,2002:' + tag, test, resolve,
});
const loaderTags = (tags) => tags.filter((t) => /:(map|seq|str)$/.test(t.tag)).concat([
  scalar('null', /^(?:~|null)?$/, () => null),
  scalar('bool', /^(?:true|false)$/, (s) => s === 'true'),
  scalar('int', /^-?[0-9]+$/, (s) => Number(s)),
  scalar('float', /^-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$/, (s) => Number(s)),
]);

function readYaml(file) {
  const doc = YAML.parseDocument(fs.readFileSync(file, 'utf8'),
                                 { schema: 'core', customTags: loaderTags, uniqueKeys: true });
  if (doc.errors.length) throw new Error(doc.errors[0].message);
  return doc.toJS({ maxAliasCount: 16 });
}

function check(validate, files, read) {
  return files.map((file) => {
    let data;
    try {
      data = read(file);
    } catch (e) {
      return { file, valid: false, errors: ['unreadable: ' + e.message] };
    }
    const valid = validate(data);
    const errors = valid ? [] : validate.errors.map((e) => `${e.instancePath} ${e.message}`);
    return { file, valid, errors };
  });
}

const [mode, ...args] = process.argv.slice(2);
let results;
if (mode === 'policy') {
  // strictRequired is a style check ('required' names declared beside it), off for the
  // generated if/then clauses, and union types are plain JSON Schema; every other strict
  // check (unknown keywords, ...) is on.
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false,
                            allowUnionTypes: true });
  addFormats(ajv);
  const validate = ajv.compile(JSON.parse(fs.readFileSync(args[0], 'utf8')));
  results = check(validate, args.slice(1), readYaml);
} else if (mode === 'sarif') {
  const schema = JSON.parse(fs.readFileSync(SARIF_SCHEMA, 'utf8'));
  if (!/2\.1\.0/.test(schema.title) || !schema.properties.version.enum.includes('2.1.0'))
    throw new Error('not the SARIF 2.1.0 schema: ' + schema.title);
  // unicodeRegExp off: rtm.5's language pattern has a stray ']' that only a unicode RegExp
  // refuses.
  const ajv = new AjvDraft04({ allErrors: true, strict: false, unicodeRegExp: false });
  addFormats(ajv);
  const validate = ajv.compile(schema);
  results = check(validate, args, (f) => JSON.parse(fs.readFileSync(f, 'utf8')));
} else if (mode === 'yaml') {
  results = args.map((file) => {
    try {
      return { file, valid: true, errors: [], data: YAML.parse(fs.readFileSync(file, 'utf8')) };
    } catch (e) {
      return { file, valid: false, errors: [e.message] };
    }
  });
} else {
  console.error('usage: node validate.mjs policy SCHEMA FILE... | sarif FILE... | yaml FILE...');
  process.exit(64);
}
console.log(JSON.stringify(results));
