#!/usr/bin/env node
// The `convert batch` protocol (docs/batch-protocol.md) implemented on top of the published
// @convertcom/js-sdk 4.4.3, so one request can be replayed against the reference SDK and convert-rs
// and the two outputs compared record by record.
//
//   node batch.js < request.json > output.json
//   node batch.js --input request.json > output.json
//   node batch.js < bench-request.json       # a bench request: prints one JSON object
//
// How it works
// * Network: `globalThis.fetch` is replaced before the SDK is loaded by a recorder that stores
//   {url, method, headers, body (parsed JSON)} and answers HTTP 200 with an empty JSON body. The
//   SDK picks its transport per request (`typeof fetch === 'function'` -> "server-with-fetch"),
//   so every tracking POST lands in the recorder; nothing leaves the process.
// * Tracking per case: right after the operation returns the harness calls
//   `context.releaseQueues()`, awaits it and lets the remaining callbacks run. The requests
//   recorded since the case started are attached to its record. A size-triggered release made
//   during the call is still "in flight" when the flush copies the queue, so the reference sends
//   those events twice (SPEC Part A Q15) -- that is what 4.4.3 does when a caller flushes at once.
//   The release timer is set to 24 h so it never fires on its own.
// * Stored bucketing (`seedBucketing`): written with the SDK's own DataManager.putData(visitorId,
//   {bucketing}) on the instance's in-memory store, under the same key the SDK reads
//   (`{accountId}-{projectId}-{visitorId}`). A DataStore object would also work, but configuring
//   one flips `enrichData` to false in every payload, so the memory store is kept.
// * `fired` of a conversion: the instance's ApiManager.enqueue is wrapped and counts events; a
//   conversion is "fired" when the call enqueued at least one event of type "conversion".
// * Engine operations use the SDK's BucketingManager and RuleManager (reachable as properties of
//   an SDK instance built from the bundle); `hash` uses the murmurhash 2.0.1 package, the one the
//   SDK bundles.
// * Each SDK instance gets a deep copy of the config: 4.4.3 casts feature variables in place.
'use strict';

const fs = require('fs');

// ---- network recorder (installed before the SDK is loaded) ------------------------------------
let recorded = [];
globalThis.fetch = async (url, init = {}) => {
  let body = null;
  if (typeof init.body === 'string') {
    try {
      body = JSON.parse(init.body);
    } catch (_) {
      body = init.body;
    }
  }
  recorded.push({
    url: String(url),
    method: String(init.method || 'GET').toUpperCase(),
    headers: Object.assign({}, init.headers || {}),
    body,
  });
  return {
    status: 200,
    statusText: 'OK',
    headers: {},
    json: async () => ({}),
    text: async () => '',
    arrayBuffer: async () => new ArrayBuffer(0),
  };
};

const sdkPackage = require('@convertcom/js-sdk');
const murmurhash = require('murmurhash');

const ConvertSDK = sdkPackage.default;
const LOG_SILENT = sdkPackage.LogLevel.SILENT;
const RULE_ERRORS = Object.values(sdkPackage.RuleError);
const BUCKETING_ERRORS = Object.values(sdkPackage.BucketingError);
const RELEASE_INTERVAL_MS = 24 * 3600 * 1000;
const ENGINE_OPS = new Set(['hash', 'bucketValue', 'selectBucket', 'ruleMatch', 'compare']);

// ---- small helpers -----------------------------------------------------------------------------
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const orNull = (v) => (v === undefined ? null : v);
const settle = () => new Promise((resolve) => setImmediate(resolve));
/** A deep copy as the output will print it (`undefined` members dropped). */
const snapshot = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

function die(message) {
  process.stderr.write(`batch.js: ${message}\n`);
  process.exit(2);
}

class CaseError extends Error {}

/** Splits the request's config into the project data and the envelope's environment. */
function unwrapConfig(config) {
  if (isObject(config) && isObject(config.data) && !('account_id' in config)) {
    return { data: config.data, environment: config.environment };
  }
  return { data: config, environment: undefined };
}

/** Deep merge of the request-level and case-level `sdk` blocks (case wins). */
function mergeOptions(base, over) {
  const out = Object.assign({}, base || {});
  for (const [k, v] of Object.entries(over || {})) {
    out[k] = isObject(v) && isObject(out[k]) ? mergeOptions(out[k], v) : v;
  }
  return out;
}

// ---- SDK instances -------------------------------------------------------------------------------
function newInstance(configValue, options) {
  if (configValue === undefined) throw new CaseError('no config given');
  const { data, environment } = unwrapConfig(structuredClone(configValue));
  if (options.dataStore !== undefined && options.dataStore !== 'memory') {
    throw new CaseError(`sdk.dataStore ${JSON.stringify(options.dataStore)} is not supported by the JS harness (only "memory")`);
  }
  const events = Object.assign({}, options.events || {}, { release_interval: RELEASE_INTERVAL_MS });
  const sdk = new ConvertSDK({
    data,
    environment: options.environment || environment || 'staging',
    bucketing: Object.assign({}, options.bucketing || {}),
    events,
    logger: { logLevel: LOG_SILENT },
  });
  const inst = { sdk, contexts: new Map(), enqueued: [] };
  const api = sdk._apiManager;
  const enqueue = api.enqueue.bind(api);
  api.enqueue = (visitorId, event, segments) => {
    inst.enqueued.push(event && event.eventType);
    return enqueue(visitorId, event, segments);
  };
  return inst;
}

function contextFor(inst, c) {
  if (typeof c.visitorId !== 'string' && typeof c.visitorId !== 'number') {
    throw new CaseError('missing field `visitorId`');
  }
  const visitorId = String(c.visitorId);
  let ctx = inst.contexts.get(visitorId);
  if (!ctx) {
    ctx = inst.sdk.createContext(visitorId, c.visitorAttributes);
    if (!ctx) throw new CaseError('the SDK could not create a context (config not accepted)');
    inst.contexts.set(visitorId, ctx);
  }
  return { ctx, visitorId };
}

// ---- result shapes --------------------------------------------------------------------------------
function decisionRecord(v) {
  if (v === null || v === undefined) return { type: 'none', decision: null };
  if (BUCKETING_ERRORS.includes(v)) return { type: 'bucketing_error', code: v, decision: null };
  if (RULE_ERRORS.includes(v)) return { type: 'rule_error', code: v };
  return {
    type: 'variation',
    decision: orNull(v.id),
    experienceId: orNull(v.experienceId),
    experienceKey: orNull(v.experienceKey),
    variationId: orNull(v.id),
    variationKey: orNull(v.key),
    bucketingAllocation: orNull(v.bucketingAllocation),
  };
}

function featureRecord(f) {
  return {
    type: 'feature',
    featureKey: orNull(f.key),
    featureId: orNull(f.id),
    status: f.status,
    experienceKey: orNull(f.experienceKey),
    experienceId: orNull(f.experienceId),
    variables: orNull(f.variables),
  };
}

function featuresResult(r) {
  const list = Array.isArray(r) ? r : [];
  const errors = list.filter((x) => RULE_ERRORS.includes(x));
  if (errors.length) return { type: 'rule_error', code: errors[0] };
  return { type: 'features', items: list.map(featureRecord) };
}

/** The per-call BucketingAttributes of SPEC §1.6 from a case. */
function bucketingAttributes(c) {
  const a = {};
  if (c.attributes !== undefined) a.visitorProperties = c.attributes;
  if (c.locationProperties !== undefined) a.locationProperties = c.locationProperties;
  for (const k of ['ignoreLocationProperties', 'enableTracking', 'forceVariationId', 'updateVisitorProperties',
    'environment', 'typeCasting', 'experienceKeys']) {
    if (c[k] !== undefined) a[k] = c[k];
  }
  return a;
}

// ---- operations -----------------------------------------------------------------------------------
const engines = new Map();
function engineFor(c) {
  const maxTraffic = c.maxTraffic === undefined ? 10000 : c.maxTraffic;
  let sdk = engines.get(maxTraffic);
  if (!sdk) {
    sdk = new ConvertSDK({
      data: { account_id: '0', project: { id: '0' } },
      bucketing: { max_traffic: maxTraffic },
      logger: { logLevel: LOG_SILENT },
    });
    engines.set(maxTraffic, sdk);
  }
  return { buckets: sdk._dataManager._bucketingManager, rules: sdk._dataManager._ruleManager };
}

function engineOp(c) {
  const { buckets, rules } = engineFor(c);
  const seed = c.seed === undefined ? 9999 : c.seed;
  switch (c.op) {
    case 'hash':
      return { type: 'hash', value: murmurhash.v3(String(c.input), seed) };
    case 'bucketValue': {
      const experienceId = c.experienceId === undefined ? '' : String(c.experienceId);
      return { type: 'bucketValue', value: buckets.getValueVisitorBased(c.visitorId, { experienceId, seed }) };
    }
    case 'selectBucket':
      return { type: 'selectBucket', value: orNull(buckets.selectBucket(c.buckets || {}, c.value)) };
    case 'ruleMatch':
      return { type: 'ruleMatch', value: rules.isRuleMatched(isObject(c.data) ? c.data : {}, c.ruleSet) };
    case 'compare': {
      // The raw comparator, as a rule item calls it. An unknown method answers false (a rule with
      // one is skipped); a comparator that throws (an invalid regular expression) makes the case
      // an error record, as the raw call throws (the rules engine would catch it: no match).
      if (!rules.getComparisonProcessorMethods().includes(c.method)) return { type: 'compare', value: false };
      const value = rules._comparisonProcessor[c.method](c.value, c.testAgainst, Boolean(c.negation));
      return { type: 'compare', value };
    }
    default:
      throw new CaseError(`unknown op \`${c.op}\``);
  }
}

function conversionArguments(c) {
  const args = {};
  if (c.ruleData !== undefined) args.ruleData = c.ruleData;
  const data = [];
  if (c.revenue !== undefined) data.push({ key: 'amount', value: c.revenue });
  if (Array.isArray(c.conversionData)) data.push(...c.conversionData);
  if (data.length) args.conversionData = data;
  if (c.conversionSetting !== undefined) args.conversionSetting = c.conversionSetting;
  return args;
}

function visitorOp(inst, c) {
  const keyed = ['runExperience', 'runFeature', 'trackConversion', 'getConfigEntity'];
  const known = keyed.concat(['runExperiences', 'runFeatures', 'runCustomSegments', 'setDefaultSegments',
    'updateVisitorProperties', 'getVisitorData', 'getConfigEntityById', 'seedBucketing']);
  if (!known.includes(c.op)) throw new CaseError(`unknown op \`${c.op}\``);
  if (keyed.includes(c.op) && c.key === undefined) throw new CaseError('missing field `key`');
  const { ctx, visitorId } = contextFor(inst, c);
  const key = c.key === undefined ? undefined : String(c.key);
  switch (c.op) {
    case 'runExperience':
      return decisionRecord(ctx.runExperience(key, bucketingAttributes(c)));
    case 'runExperiences':
      return { type: 'variations', items: (ctx.runExperiences(bucketingAttributes(c)) || []).map(decisionRecord) };
    case 'runFeature': {
      const r = ctx.runFeature(key, bucketingAttributes(c));
      if (Array.isArray(r)) return featuresResult(r);
      if (RULE_ERRORS.includes(r)) return { type: 'rule_error', code: r };
      return r ? featureRecord(r) : { type: 'none', decision: null };
    }
    case 'runFeatures':
      return featuresResult(ctx.runFeatures(bucketingAttributes(c)));
    case 'trackConversion': {
      const before = inst.enqueued.length;
      const returned = ctx.trackConversion(key, conversionArguments(c));
      const fired = inst.enqueued.slice(before).includes('conversion');
      return { type: 'conversion', returned: orNull(returned), fired };
    }
    case 'runCustomSegments': {
      const keys = Array.isArray(c.segmentKeys) ? c.segmentKeys : c.segmentKeys === undefined ? [] : [c.segmentKeys];
      const ruleData = c.ruleData !== undefined ? c.ruleData : c.attributes;
      const returned = ctx.runCustomSegments(keys.map(String), ruleData === undefined ? {} : { ruleData });
      return { type: 'customSegments', returned: orNull(returned), visitorData: ctx.getVisitorData() || {} };
    }
    case 'setDefaultSegments':
      ctx.setDefaultSegments(isObject(c.segments) ? c.segments : {});
      return { type: 'ok' };
    case 'updateVisitorProperties': {
      const props = [c.properties, c.visitorProperties, c.attributes].find(isObject) || {};
      ctx.updateVisitorProperties(visitorId, props);
      return { type: 'ok' };
    }
    case 'getVisitorData':
      return { type: 'visitorData', value: ctx.getVisitorData() || {} };
    case 'getConfigEntity':
    case 'getConfigEntityById': {
      if (typeof c.entityType !== 'string') throw new CaseError('missing or unknown field `entityType`');
      const entity = c.op === 'getConfigEntity'
        ? ctx.getConfigEntity(key, c.entityType)
        : ctx.getConfigEntityById(String(c.id), c.entityType);
      const value = orNull(entity);
      return { type: 'entity', id: value && value.id !== undefined ? value.id : null, value };
    }
    case 'seedBucketing': {
      const bucketing = {};
      for (const [experienceId, variationId] of Object.entries(isObject(c.bucketing) ? c.bucketing : {})) {
        bucketing[experienceId] = String(variationId);
      }
      inst.sdk._dataManager.putData(visitorId, { bucketing });
      return { type: 'ok' };
    }
    default:
      throw new CaseError(`unknown op \`${c.op}\``);
  }
}

// ---- driver ------------------------------------------------------------------------------------------
function readRequest(argv) {
  let file;
  let conformanceDir = process.env.CONVERT_CONFORMANCE_DIR;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--input') file = argv[++i];
    else if (argv[i].startsWith('--input=')) file = argv[i].slice('--input='.length);
    else if (argv[i] === '--conformance-dir') conformanceDir = argv[++i];
    else if (argv[i] === '-h' || argv[i] === '--help') {
      process.stdout.write('usage: node batch.js [--input FILE] [--conformance-dir DIR]   (default: the request on stdin)\n');
      process.exit(0);
    } else die(`unknown argument ${JSON.stringify(argv[i])}`);
  }
  let text;
  try {
    text = fs.readFileSync(file === undefined ? 0 : file, 'utf8');
  } catch (e) {
    die(`cannot read the request: ${e.message}`);
  }
  let request;
  try {
    request = JSON.parse(text);
  } catch (e) {
    die(`the request is not valid JSON: ${e.message}`);
  }
  if (!isObject(request)) die('the request must be a JSON object');
  // tests/golden/shared-config: the request names a shared conformance config instead of
  // carrying it.
  if (request.config === undefined && typeof request.configFile === 'string') {
    if (!conformanceDir) die('`configFile` needs --conformance-dir or CONVERT_CONFORMANCE_DIR');
    const configPath = require('path').join(conformanceDir, request.configFile);
    try {
      request.config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    } catch (e) {
      die(`cannot load ${configPath}: ${e.message}`);
    }
    delete request.configFile;
  }
  if (request.bench === undefined && !Array.isArray(request.cases)) die('the request must have a `cases` array');
  if (request.state !== undefined && request.state !== 'isolated' && request.state !== 'shared') {
    die(`\`state\` must be "isolated" or "shared", not ${JSON.stringify(request.state)}`);
  }
  (request.cases || []).forEach((c, i) => {
    if (!isObject(c)) die(`cases[${i}] must be an object`);
  });
  return request;
}

// ---- bench (BATCH-PROTOCOL.md "Bench request") ----------------------------------------------------
function runBench(request) {
  const b = request.bench || {};
  if (typeof b.key !== 'string') die('`bench.key` (an experience key) is required');
  const n = Number.isInteger(b.n) ? b.n : 100000;
  const warmup = Number.isInteger(b.warmup) ? b.warmup : 10000;
  const prefix = typeof b.visitorPrefix === 'string' ? b.visitorPrefix : 'bench-visitor-';
  const mode = b.mode || 'context+decide';
  if (mode !== 'context+decide' && mode !== 'decide-only') die(`bench.mode ${JSON.stringify(mode)}`);
  if ((b.threads || 1) !== 1) die('the JS harness runs single-threaded (bench.threads must be 1)');
  const inst = newInstance(request.config, request.sdk || {});
  const attrs = {
    visitorProperties: b.attributes,
    locationProperties: b.locationProperties,
    enableTracking: b.enableTracking === true,
  };
  for (let i = 0; i < warmup; i++) {
    inst.sdk.createContext(`${prefix}warmup-${i}`).runExperience(b.key, attrs);
  }
  let bucketed = 0;
  let seconds;
  if (mode === 'decide-only') {
    const contexts = [];
    for (let i = 0; i < n; i++) contexts.push(inst.sdk.createContext(`${prefix}${i}`));
    const t0 = process.hrtime.bigint();
    for (const ctx of contexts) if (ctx.runExperience(b.key, attrs)) bucketed++;
    seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  } else {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      if (inst.sdk.createContext(`${prefix}${i}`).runExperience(b.key, attrs)) bucketed++;
    }
    seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  return {
    sdk: 'js4.4.3', mode, key: b.key, n, threads: 1, seconds,
    decisionsPerSecond: Math.round(seconds > 0 ? n / seconds : 0), bucketed,
  };
}

async function main() {
  const request = readRequest(process.argv.slice(2));
  if (request.bench !== undefined) {
    const result = runBench(request);
    process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
    return;
  }
  const shared = request.state === 'shared';
  // Default true (also for null, as an absent field); otherwise JavaScript truthiness, as the
  // other switches.
  const capture = request.captureTracking == null ? true : Boolean(request.captureTracking);
  const instances = new Map();
  const output = [];
  for (let i = 0; i < request.cases.length; i++) {
    const c = request.cases[i];
    const record = {
      i,
      id: orNull(c.id),
      op: orNull(c.op),
      visitorId: orNull(c.visitorId),
      key: orNull(c.key),
      result: null,
      error: null,
      tracking: [],
    };
    recorded = [];
    const slot = c.session !== undefined ? `session:${c.session}` : shared ? 'shared' : `case:${i}`;
    try {
      if (ENGINE_OPS.has(c.op)) {
        record.result = engineOp(c);
      } else {
        let inst = instances.get(slot);
        if (!inst) {
          inst = newInstance(c.config !== undefined ? c.config : request.config, mergeOptions(request.sdk, c.sdk));
          instances.set(slot, inst);
        }
        // A snapshot: results such as `getVisitorData()` are the SDK's live stored objects, which
        // later cases (of any visitor) may change in place before the output is printed.
        record.result = snapshot(visitorOp(inst, c));
        if (capture) {
          // The queue belongs to the instance; the case's own context releases it.
          const ctx = inst.contexts.get(String(c.visitorId)) || inst.contexts.values().next().value;
          if (ctx) await ctx.releaseQueues('flush');
          await settle();
        }
      }
    } catch (e) {
      const message = String(e && e.message !== undefined ? e.message : e);
      record.result = { type: 'error', message };
      record.error = message;
    }
    record.tracking = capture ? recorded : [];
    if (slot === `case:${i}`) instances.delete(slot);
    output.push(record);
  }
  // Events left queued (captureTracking false) would otherwise keep their release timer alive.
  process.stdout.write(JSON.stringify(output, null, 2) + '\n', () => process.exit(0));
}

main().catch((e) => die(String(e && e.stack ? e.stack : e)));
