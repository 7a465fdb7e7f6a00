#!/usr/bin/env node
// The batch evaluation protocol (docs/batch-protocol.md) on top of the published
// @convertcom/js-sdk, so the same request can be replayed against the reference SDK and convert-rs.
//
//   node batch.js < request.json > results.json
//   node batch.js --input request.json
//
// No request leaves the process: global fetch is replaced by a recorder that answers 200, and the
// recorded tracking requests are attached to the case that produced them.
'use strict';

const fs = require('fs');
const path = require('path');

const SDK_DIR = path.join(__dirname, 'node_modules', '@convertcom', 'js-sdk');
const sdkModule = require(SDK_DIR);
const ConvertSDK = sdkModule.default;
const murmurhash = require('murmurhash');

// ---- network recorder ---------------------------------------------------------------------
let recorded = [];
globalThis.fetch = async (url, options = {}) => {
  let body = null;
  if (options.body !== undefined) {
    try {
      body = JSON.parse(options.body);
    } catch (_) {
      body = options.body;
    }
  }
  recorded.push({
    url: String(url),
    method: String(options.method || 'GET').toUpperCase(),
    headers: Object.assign({}, options.headers || {}),
    body,
  });
  return {
    status: 200,
    statusText: 'OK',
    headers: new Map(),
    json: async () => ({}),
    text: async () => '',
    arrayBuffer: async () => new ArrayBuffer(0),
  };
};

// ---- helpers --------------------------------------------------------------------------------
const SILENT = 5;
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const RULE_ERRORS = ['convert.com_no_data_found', 'convert.com_need_more_data'];
const NOT_DECIDED = 'convert.com_variation_not_decided';

function fail(message) {
  process.stderr.write(`batch.js: ${message}\n`);
  process.exit(2);
}

function unwrapConfig(config) {
  if (isObject(config) && !('account_id' in config) && isObject(config.data)) {
    return { data: config.data, environment: config.environment };
  }
  return { data: config, environment: undefined };
}

function buildSdk(configValue, sdkOptions) {
  const { data, environment } = unwrapConfig(configValue);
  const opts = sdkOptions || {};
  const store = opts.dataStore;
  if (store !== undefined && store !== 'memory') {
    throw new Error(`sdk.dataStore ${JSON.stringify(store)} is not supported by this harness`);
  }
  const batchSize = (opts.events && opts.events.batch_size) || 10;
  const sdk = new ConvertSDK({
    data,
    environment: opts.environment || environment || 'staging',
    bucketing: Object.assign({}, opts.bucketing || {}),
    events: { batch_size: batchSize, release_interval: 3600 * 1000 },
    logger: { logLevel: SILENT },
  });
  return { sdk, contexts: new Map() };
}

function variationRecord(v) {
  if (v === null || v === undefined) return { type: 'none', decision: null };
  if (v === NOT_DECIDED) return { type: 'bucketing_error', code: NOT_DECIDED, decision: null };
  if (typeof v === 'string' && RULE_ERRORS.includes(v)) return { type: 'rule_error', code: v };
  return {
    type: 'variation',
    decision: v.id,
    experienceId: v.experienceId,
    experienceKey: v.experienceKey,
    variationId: v.id,
    variationKey: v.key === undefined ? null : v.key,
    bucketingAllocation: v.bucketingAllocation === undefined ? null : v.bucketingAllocation,
  };
}

function featureRecord(f) {
  const orNull = (x) => (x === undefined ? null : x);
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

function attributes(c) {
  const a = {};
  if (c.attributes !== undefined) a.visitorProperties = c.attributes;
  if (c.locationProperties !== undefined) a.locationProperties = c.locationProperties;
  for (const k of ['ignoreLocationProperties', 'enableTracking', 'forceVariationId',
    'updateVisitorProperties', 'environment', 'typeCasting', 'experienceKeys']) {
    if (c[k] !== undefined) a[k] = c[k];
  }
  return a;
}

function queueLength(sdk) {
  const q = sdk._apiManager && sdk._apiManager._requestsQueue;
  return q ? q.length : 0;
}

// ---- operations -----------------------------------------------------------------------------
function engineOp(c, scratch) {
  const seed = c.seed === undefined ? 9999 : c.seed;
  const bm = scratch._dataManager._bucketingManager;
  const rm = scratch._dataManager._ruleManager;
  switch (c.op) {
    case 'hash':
      return { type: 'hash', value: murmurhash.v3(String(c.input), seed) };
    case 'bucketValue':
      return {
        type: 'bucketValue',
        value: bm.getValueVisitorBased(c.visitorId, { experienceId: String(c.experienceId || ''), seed }),
      };
    case 'selectBucket': {
      const v = bm.selectBucket(c.buckets || {}, c.value);
      return { type: 'selectBucket', value: v === undefined ? null : v };
    }
    case 'ruleMatch':
      return { type: 'ruleMatch', value: rm.isRuleMatched(c.data || {}, c.ruleSet) };
    case 'compare': {
      const fn = rm._comparisonProcessor[c.method];
      if (typeof fn !== 'function') return { type: 'compare', value: false };
      return { type: 'compare', value: Boolean(fn.call(rm._comparisonProcessor, c.value, c.testAgainst, Boolean(c.negation))) };
    }
    default:
      return null;
  }
}

function visitorOp(inst, c) {
  const { sdk, contexts } = inst;
  if (typeof c.visitorId !== 'string' && typeof c.visitorId !== 'number') {
    throw new Error('missing field `visitorId`');
  }
  const vid = String(c.visitorId);
  let ctx = contexts.get(vid);
  if (!ctx) {
    ctx = sdk.createContext(vid, c.visitorAttributes);
    contexts.set(vid, ctx);
  }
  const needsKey = ['runExperience', 'runFeature', 'trackConversion', 'getConfigEntity'];
  if (needsKey.includes(c.op) && c.key === undefined) throw new Error('missing field `key`');
  switch (c.op) {
    case 'runExperience':
      return variationRecord(ctx.runExperience(c.key, attributes(c)));
    case 'runExperiences':
      return { type: 'variations', items: (ctx.runExperiences(attributes(c)) || []).map(variationRecord) };
    case 'runFeature': {
      const r = ctx.runFeature(c.key, attributes(c));
      if (typeof r === 'string') return { type: 'rule_error', code: r };
      if (Array.isArray(r)) {
        const err = r.find((x) => typeof x === 'string');
        if (err) return { type: 'rule_error', code: err };
        return { type: 'features', items: r.map(featureRecord) };
      }
      return featureRecord(r);
    }
    case 'runFeatures': {
      const r = ctx.runFeatures(attributes(c)) || [];
      const err = r.find((x) => typeof x === 'string');
      if (err) return { type: 'rule_error', code: err };
      return { type: 'features', items: r.map(featureRecord) };
    }
    case 'trackConversion': {
      const conversionData = [];
      if (c.revenue !== undefined) conversionData.push({ key: 'amount', value: c.revenue });
      for (const d of c.conversionData || []) conversionData.push(d);
      const args = {};
      if (c.ruleData !== undefined) args.ruleData = c.ruleData;
      if (conversionData.length) args.conversionData = conversionData;
      if (c.conversionSetting !== undefined) args.conversionSetting = c.conversionSetting;
      const before = queueLength(sdk) + recordedEvents();
      const returned = ctx.trackConversion(c.key, args);
      const after = queueLength(sdk) + recordedEvents();
      return { type: 'conversion', returned: returned === undefined ? null : returned, fired: after > before };
    }
    case 'runCustomSegments': {
      const args = {};
      const ruleData = c.ruleData !== undefined ? c.ruleData : c.attributes;
      if (ruleData !== undefined) args.ruleData = ruleData;
      const keys = Array.isArray(c.segmentKeys) ? c.segmentKeys : [c.segmentKeys];
      const r = ctx.runCustomSegments(keys, args);
      return { type: 'customSegments', returned: r === undefined ? null : r, visitorData: ctx.getVisitorData() || {} };
    }
    case 'setDefaultSegments':
      ctx.setDefaultSegments(c.segments || {});
      return { type: 'ok' };
    case 'updateVisitorProperties':
      ctx.updateVisitorProperties(vid, c.properties || c.visitorProperties || c.attributes || {});
      return { type: 'ok' };
    case 'getVisitorData':
      return { type: 'visitorData', value: ctx.getVisitorData() || {} };
    case 'getConfigEntity':
    case 'getConfigEntityById': {
      const v = c.op === 'getConfigEntity'
        ? ctx.getConfigEntity(String(c.key), c.entityType)
        : ctx.getConfigEntityById(String(c.id), c.entityType);
      const value = v === undefined ? null : v;
      return { type: 'entity', id: value && value.id !== undefined ? value.id : null, value };
    }
    case 'seedBucketing':
      sdk._dataManager.putData(vid, { bucketing: Object.assign({}, c.bucketing || {}) });
      return { type: 'ok' };
    default:
      throw new Error(`unknown op \`${c.op}\``);
  }
}

function recordedEvents() {
  let n = 0;
  for (const r of recorded) {
    if (r.body && Array.isArray(r.body.visitors)) {
      for (const v of r.body.visitors) n += (v.events || []).length;
    }
  }
  return n;
}

async function main() {
  const args = process.argv.slice(2);
  let text;
  const i = args.indexOf('--input');
  try {
    text = i >= 0 ? fs.readFileSync(args[i + 1], 'utf8') : fs.readFileSync(0, 'utf8');
  } catch (e) {
    fail(`cannot read the request: ${e.message}`);
  }
  let req;
  try {
    req = JSON.parse(text);
  } catch (e) {
    fail(`the request is not valid JSON: ${e.message}`);
  }
  if (!isObject(req)) fail('the request must be a JSON object');
  if (!Array.isArray(req.cases)) fail('the request must have a `cases` array');
  const shared = req.state === 'shared';
  const capture = req.captureTracking !== false;
  const scratch = new ConvertSDK({ data: { account_id: '0', project: { id: '0' } }, logger: { logLevel: SILENT } });
  const instances = new Map();
  const out = [];
  for (let n = 0; n < req.cases.length; n++) {
    const c = req.cases[n] || {};
    const record = {
      i: n,
      id: c.id === undefined ? null : c.id,
      op: c.op === undefined ? null : c.op,
      visitorId: c.visitorId === undefined ? null : c.visitorId,
      key: c.key === undefined ? null : c.key,
      result: null,
      error: null,
      tracking: [],
    };
    recorded = [];
    try {
      const engine = engineOp(c, scratch);
      if (engine) {
        record.result = engine;
      } else {
        const key = c.session !== undefined ? `session:${c.session}` : shared ? 'shared' : `case:${n}`;
        let inst = instances.get(key);
        if (!inst) {
          const sdkOptions = Object.assign({}, req.sdk || {}, c.sdk || {});
          inst = buildSdk(c.config || req.config, sdkOptions);
          instances.set(key, inst);
        }
        record.result = visitorOp(inst, c);
        if (capture) {
          const ctx = inst.contexts.get(String(c.visitorId));
          if (ctx) await ctx.releaseQueues('flush');
          await new Promise((r) => setImmediate(r));
        }
        if (!shared && c.session === undefined) instances.delete(key);
      }
    } catch (e) {
      record.result = { type: 'error', message: String(e && e.message ? e.message : e) };
      record.error = record.result.message;
    }
    record.tracking = capture ? recorded : [];
    out.push(record);
  }
  // The SDK may hold release timers; the output is complete, so leave now.
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
}

main().catch((e) => fail(String(e && e.stack ? e.stack : e)));
