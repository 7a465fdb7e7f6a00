#!/usr/bin/env node
// A random differential between convert-rs and the published @convertcom/js-sdk 4.4.3: random
// configs, visitors and operations, replayed through `batch.js` (the reference) and `convert batch`,
// compared record by record. Run by `cargo xtask differential [--seed N] [--rounds N]`:
//
//   node differential.js --convert PATH [--seed N] [--rounds N] [--out DIR]
//
// Every request stays inside what convert-rs promises to answer as 4.4.3 does (SPEC.md Part A):
// experiences use the packed layout (`version` absent or at most 11; 4.4.3 has no anchored
// layout), every call passes `locationProperties` or `ignoreLocationProperties` (Q2), every config
// carries `matching_options` (Q9), the batch size is never reached inside a case (Q15, Q16), and
// features run on a fresh instance per case without tracking capture (Q11, Q12). One documented
// difference is allowed when comparing: the reference's bucketing events also carry non-report
// visitor properties (Q14), which are filtered out of its payloads first. Within that space
// anything goes: every comparison operator on strings, numbers, booleans, arrays, objects, null and
// thousands-grouped numbers; negation present, absent or not a boolean; look-around and
// backreferences in patterns; permanent audiences, custom segments, stored and forced bucketing,
// stopped arms and allocations that do not sum to 100, duplicate variation ids, environments,
// archived experiences, goals with and without rules, revenue and dedup, feature variables of
// every type.
//
// A disagreement prints the round's seed, the case and both records, and keeps the request in
// DIR/differential-<seed>-<visitors|features>.request.json (DIR: the system temp folder unless
// --out says otherwise), to be replayed with either tool alone. The exit status is 1 when any
// round disagreed.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { option, rng, runTool, stable } = require('./random-run');

const CONVERT = option('--convert');
const FIRST_SEED = Number(option('--seed', String(Date.now() % 1000000)));
const ROUNDS = Number(option('--rounds', '20'));
const OUT = option('--out', os.tmpdir());
if (!CONVERT) {
  process.stderr.write('differential.js: --convert PATH (the convert binary) is required\n');
  process.exit(2);
}

// ---- value pools ----------------------------------------------------------------------------------
const WORDS = ['free', 'Free', 'pro', 'PRO', 'team', 'de', 'DE', 'us', 'abc', 'aab', 'xyzzy', 'e', 'Σς',
  'café', 'cafe\u0301', '日本', '😀', 'a|b', 'x,y', ' 5', '5', '10', '10.0', '-3', '.5', '0,500',
  '1,234.5', '1,23', 'true', 'TRUE', 'false', 'null', '', ' ', 'https://shop.example/cart?x=1',
  '/checkout/step-2', 'mobile', 'MoBiLe', 'aa', 'abab', 'free-trial', 'the end', 'İstanbul', 'STRASSE',
  'straße', 'ǅ', '\u212a', 'p', 'L', '\n', 'line\u2028break', '\u00a0', 'x'.repeat(40)];
const NUMBERS = [0, 1, 5, 10, -3, 0.5, 2.25, 1234.5, 123, 1e21, 99999, -0.25];
const KEYS = ['country', 'plan', 'age', 'flag', 'tags', 'url', 'device', 'score'];
const PATTERNS = ['^free', '^(?!free)', '^(?=.*e).+$', '(.)\\1', 'pro$', '^\\d+$', 'ca(f|ff)e',
  '(?<!a)b', '(?<=a)b', '^(?<w>[a-z])\\k<w>', '\\bend\\b', '[', 'a{,2}', '^.{3,}$', 'x|y',
  '\\u00e9', '日本', '(a)|\\1b', '^$', '.*', 'ch?eck', '(?:ab)+', '^[^/]+$', '\\/cart',
  '\\p{L}', '[\\s\\S]{2}', '(?i)abc', '\\d{2,}', '^.*?$', '\\W', '[^\\x00-\\x7f]', '\\u{1F600}',
  'a(?=b)', '\\0', '[\\b]', '\\cJ', 'k', 'ß', '\\u0130', 'x{2}{3}', '(?=a)*', '\\8', '[z-a]'];
const MATCH_TYPES = ['equals', 'matches', 'equalsNumber', 'less', 'lessEqual', 'contains', 'isIn',
  'startsWith', 'endsWith', 'regexMatches', 'exists', 'doesNotExist', 'not_exists', 'noSuchMatch'];
const REPORT_SEGMENTS = { country: ['DE', 'US'], browser: ['CH', 'FF'], devices: ['DESK', 'MOB'],
  source: ['direct', 'search'], campaign: ['spring'], visitorType: ['new', 'returning'],
  customSegments: [['seg-x']] };

function datum(r) {
  switch (r.int(8)) {
    case 0: case 1: case 2: return r.pick(WORDS);
    case 3: case 4: return r.pick(NUMBERS);
    case 5: return r.chance(0.5);
    case 6: return r.chance(0.8) ? [r.pick(WORDS), r.pick(NUMBERS)].slice(0, 1 + r.int(2))
      : { [r.pick(WORDS)]: r.pick(NUMBERS) };
    default: return r.chance(0.3) ? null : r.pick(WORDS).toUpperCase();
  }
}

function properties(r, n) {
  const out = {};
  for (let i = 0; i < n; i++) out[r.pick(KEYS)] = datum(r);
  return out;
}

function ruleValue(r, matchType) {
  if (matchType === 'regexMatches') return r.pick(PATTERNS);
  if (matchType === 'isIn') {
    return r.chance(0.6) ? [r.pick(WORDS), r.pick(WORDS), r.pick(WORDS)].join('|')
      : [r.pick(WORDS), r.pick(NUMBERS)];
  }
  return datum(r);
}

function rule(r) {
  // Patterns get a quarter of the rules: JavaScript's regex semantics are the widest surface.
  const matchType = r.chance(0.25) ? 'regexMatches' : r.pick(MATCH_TYPES);
  const item = {
    rule_type: r.pick(['generic_text_key_value', 'generic_numeric_key_value', 'generic_bool_key_value']),
    key: r.pick(KEYS),
    matching: { match_type: matchType, negated: r.chance(0.3) },
  };
  if (r.chance(0.04)) delete item.matching.negated;
  else if (r.chance(0.03)) item.matching.negated = 'true';
  if (!['exists', 'doesNotExist', 'not_exists'].includes(matchType) || r.chance(0.5)) {
    item.value = ruleValue(r, matchType);
  }
  return item;
}

function ruleSet(r) {
  // A third of the rule sets are one likely-true rule, so that enough visitors get through to
  // bucketing, custom segments and goals.
  if (r.chance(0.35)) {
    const item = { rule_type: 'generic_text_key_value', key: r.pick(KEYS),
      matching: { match_type: 'doesNotExist', negated: false } };
    if (r.chance(0.5)) item.value = '';
    return { OR: [{ AND: [{ OR_WHEN: [item, rule(r)] }] }] };
  }
  const or = [];
  for (let i = 0; i < 1 + r.int(2); i++) {
    const and = [];
    for (let j = 0; j < 1 + r.int(2); j++) {
      const orWhen = [];
      for (let k = 0; k < 1 + r.int(3); k++) orWhen.push(rule(r));
      and.push({ OR_WHEN: orWhen });
    }
    or.push({ AND: and });
  }
  return { OR: or };
}

// ---- configs ------------------------------------------------------------------------------------------
function config(r) {
  const audiences = [];
  for (let i = 0; i < 1 + r.int(4); i++) {
    audiences.push({ id: String(700 + i), key: `aud-${i}`, name: `Audience ${i}`,
      type: r.pick(['transient', 'permanent', 'segmentation']), rules: ruleSet(r) });
  }
  const locations = [];
  for (let i = 0; i < 1 + r.int(3); i++) {
    locations.push({ id: String(800 + i), key: `loc-${i}`, name: `Location ${i}`, rules: ruleSet(r) });
  }
  const segments = [];
  for (let i = 0; i < r.int(3); i++) {
    segments.push({ id: String(600 + i), key: `seg-${i}`, name: `Segment ${i}`, rules: ruleSet(r) });
  }
  const goals = [];
  for (let i = 0; i < 1 + r.int(3); i++) {
    const g = { id: String(500 + i), key: `goal-${i}`, name: `Goal ${i}`, type: 'advanced' };
    if (r.chance(0.6)) g.rules = ruleSet(r);
    goals.push(g);
  }
  const TYPES = ['boolean', 'integer', 'float', 'string', 'json'];
  const features = [];
  for (let i = 0; i < r.int(4); i++) {
    const variables = [];
    for (let k = 0; k < r.int(4); k++) variables.push({ key: `var${k}`, type: r.pick(TYPES) });
    features.push({ id: r.pick(['300', '20', '5', 'abc', '70', '1000']) + (i ? `${i}` : ''),
      key: `feature-${i}`, name: `Feature ${i}`, variables });
  }
  const VARIABLE_VALUES = ['true', 'false', 'False', '42', '42.9', '0x10', '1e3', ' 12 ', '3.9abc', '',
    '{"x":[1,2]}', '{bad json', 'null', 7, 2.5, true, null];
  const changes = () => features.filter(() => r.chance(0.4)).map((f, n) => ({ id: n + 1,
    type: 'fullStackFeature', data: { feature_id: f.id,
      variables_data: Object.fromEntries(f.variables.filter(() => r.chance(0.85))
        .map((v) => [v.key, r.pick(VARIABLE_VALUES)])) } }));
  const experiences = [];
  for (let i = 0; i < 1 + r.int(4); i++) {
    const variations = [];
    const n = 1 + r.int(4);
    for (let v = 0; v < n; v++) {
      const numeric = 100000 + i * 10 + (r.chance(0.5) ? n - v : v);
      const id = r.chance(0.8) ? String(numeric) : r.chance(0.8) ? `v${i}${v}` : numeric;
      const variation = { id, key: `var-${i}-${v}`, name: `Variation ${v}`,
        traffic_allocation: r.chance(0.9) ? Math.floor(100 / n) + (v === 0 ? 100 % n : 0) : r.pick([0, 30, 12.5]) };
      if (r.chance(0.08)) variation.status = 'stopped';
      const ch = changes();
      if (ch.length) variation.changes = ch;
      variations.push(variation);
    }
    const e = { id: r.chance(0.05) ? 900 + i : String(900 + i), key: `exp-${i}`, name: `Experience ${i}`, type: 'a/b_fullstack',
      variations, goals: goals.filter(() => r.chance(0.7)).map((g) => g.id),
      settings: { matching_options: { audiences: r.pick(['any', 'all']), locations: 'any' } },
      audiences: audiences.filter(() => r.chance(0.4)).map((a) => a.id) };
    if (r.chance(0.5)) e.version = r.pick([1, 5, 11]);
    if (r.chance(0.7)) e.locations = locations.filter(() => r.chance(0.6)).map((l) => l.id);
    else if (r.chance(0.5)) e.site_area = ruleSet(r);
    if (r.chance(0.2)) e.environment = r.pick(['staging', 'production']);
    if (r.chance(0.15) && segments.length) e.segments = [r.pick(segments).id];
    experiences.push(e);
  }
  const archived = experiences.filter(() => r.chance(0.1)).map((e) => e.id);
  return { account_id: '10022', project: { id: '10033', name: 'Differential' }, experiences,
    audiences, locations, segments, goals, features, archived_experiences: archived };
}

// ---- cases --------------------------------------------------------------------------------------------
function cases(r, cfg) {
  const ID_SHAPES = [(n) => `visitor-${n}`, (n) => `${n}`, (n) => `visiteur-é-${n}`, (n) => `访客-${n}`,
    (n) => `😀-${n}`, (n) => ` spaced ${n} `];
  const visitors = Array.from({ length: 2 + r.int(4) }, (_, i) => `${r.pick(ID_SHAPES)(r.int(1000))}-${i}`);
  const created = new Set();
  const out = [];
  for (let i = 0; i < 8 + r.int(20); i++) {
    const visitorId = r.pick(visitors);
    const c = { visitorId };
    if (!created.has(visitorId)) {
      created.add(visitorId);
      if (r.chance(0.4)) c.visitorAttributes = properties(r, 1 + r.int(2));
    }
    const call = () => {
      if (r.chance(0.7)) c.attributes = properties(r, r.int(4));
      if (r.chance(0.8)) c.locationProperties = properties(r, r.int(4));
      else c.ignoreLocationProperties = true;
      if (r.chance(0.3)) c.enableTracking = r.chance(0.5);
      if (r.chance(0.15)) c.updateVisitorProperties = true;
      if (r.chance(0.1)) c.environment = r.pick(['staging', 'production']);
    };
    const exp = r.pick(cfg.experiences);
    switch (r.int(10)) {
      case 0: case 1: case 2:
        c.op = 'runExperience';
        c.key = r.chance(0.95) ? exp.key : 'no-such-experience';
        call();
        // A string, as the reference declares it (a number would be stored as given).
        if (r.chance(0.08)) c.forceVariationId = String(r.pick(exp.variations).id);
        break;
      case 3: case 4:
        c.op = 'runExperiences';
        call();
        break;
      case 5: case 6: {
        c.op = 'trackConversion';
        c.key = r.pick(cfg.goals).key;
        if (r.chance(0.6)) c.ruleData = properties(r, r.int(3));
        if (r.chance(0.4)) c.revenue = r.pick([10, 0.5, 1e21, 99.99]);
        if (r.chance(0.2)) c.conversionData = [{ key: 'productsCount', value: r.pick([1, 3]) }];
        if (r.chance(0.2)) c.conversionSetting = { forceMultipleTransactions: true };
        break;
      }
      case 7:
        c.op = 'runCustomSegments';
        c.segmentKeys = cfg.segments.filter(() => r.chance(0.6)).map((s) => s.key);
        if (r.chance(0.5)) c.ruleData = properties(r, r.int(3));
        break;
      case 8: {
        c.op = 'setDefaultSegments';
        const seg = {};
        for (const k of Object.keys(REPORT_SEGMENTS)) if (r.chance(0.3)) seg[k] = r.pick(REPORT_SEGMENTS[k]);
        c.segments = seg;
        break;
      }
      default: {
        const pick = r.int(5);
        if (pick === 0) {
          c.op = 'getVisitorData';
        } else if (pick === 1) {
          c.op = 'seedBucketing';
          c.bucketing = { [exp.id]: r.chance(0.9) ? r.pick(exp.variations).id : 'gone' };
        } else if (pick === 2) {
          c.op = 'updateVisitorProperties';
          c.properties = properties(r, 1 + r.int(2));
        } else {
          const types = { experience: cfg.experiences, audience: cfg.audiences, location: cfg.locations,
            segment: cfg.segments, goal: cfg.goals, feature: cfg.features };
          const entityType = r.pick(Object.keys(types));
          const entity = types[entityType].length && r.chance(0.8) ? r.pick(types[entityType]) : null;
          if (pick === 3) {
            c.op = 'getConfigEntity';
            c.key = entity ? entity.key : 'nothing';
          } else {
            c.op = 'getConfigEntityById';
            c.id = entity ? String(entity.id) : '404';
          }
          c.entityType = entityType;
        }
      }
    }
    out.push(c);
  }
  return out;
}

/** Feature calls, each on a fresh instance (`isolated`) without tracking capture: the reference
 * decides every experience for them (Q11) and casts variables in the config it holds (Q12). */
function featureCases(r, cfg) {
  const out = [];
  for (let i = 0; i < 4 + r.int(8); i++) {
    const c = { visitorId: `feature-visitor-${r.int(50)}` };
    if (r.chance(0.5)) {
      c.op = 'runFeatures';
    } else {
      c.op = 'runFeature';
      c.key = cfg.features.length && r.chance(0.9) ? r.pick(cfg.features).key : 'no-such-feature';
    }
    if (r.chance(0.6)) c.attributes = properties(r, r.int(3));
    c.locationProperties = properties(r, r.int(3));
    if (r.chance(0.3)) c.typeCasting = r.chance(0.5);
    out.push(c);
  }
  return out;
}

// ---- running and comparing ---------------------------------------------------------------------------
/** `source` is "rust-sdk" in our payloads and "js4.4.3" in the reference's (SPEC Part A). */
function neutralise(records) {
  for (const rec of records) {
    for (const t of rec.tracking || []) {
      if (t.body && typeof t.body === 'object' && 'source' in t.body) t.body.source = '<source>';
    }
  }
}

/**
 * Q14: the reference's bucketing events carry the raw stored segments, which hold every visitor
 * property `updateVisitorProperties` stored; convert-rs sends only the report-segment keys (and no
 * `segments` member when none is left). The reference's payloads are filtered the same way.
 */
function reportSegmentsOnly(records) {
  for (const rec of records) {
    for (const t of rec.tracking || []) {
      for (const v of (t.body && t.body.visitors) || []) {
        if (!v.segments || typeof v.segments !== 'object') continue;
        const kept = Object.fromEntries(Object.entries(v.segments).filter(([k]) => k in REPORT_SEGMENTS));
        if (Object.keys(kept).length) v.segments = kept;
        else delete v.segments;
      }
    }
  }
}

/** What the reference's answers covered, so that a run that agrees is seen not to be vacuous. */
const seen = { records: 0, variations: 0, sticky: 0, enabledFeatures: 0, conversionsFired: 0,
  customSegments: 0, trackingRequests: 0 };
function count(records) {
  for (const rec of records) {
    seen.records++;
    seen.trackingRequests += (rec.tracking || []).length;
    const res = rec.result || {};
    const variations = res.type === 'variation' ? [res] : res.type === 'variations' ? res.items : [];
    for (const v of variations) {
      seen.variations++;
      if (v.bucketingAllocation === null) seen.sticky++;
    }
    const features = res.type === 'feature' ? [res] : res.type === 'features' ? res.items : [];
    seen.enabledFeatures += features.filter((f) => f.status === 'enabled').length;
    if (res.type === 'conversion' && res.fired) seen.conversionsFired++;
    if (res.type === 'customSegments' && res.returned) seen.customSegments++;
  }
}

let failed = 0;
for (let round = 0; round < ROUNDS; round++) {
  const seed = FIRST_SEED + round;
  const r = rng(seed);
  const cfg = config(r);
  const sdk = { events: { batch_size: 500 } };
  if (r.chance(0.3)) {
    sdk.bucketing = { hash_seed: r.pick([9999, 1, 12345]), max_traffic: r.pick([10000, 10000, 1000, 100]),
      excludeExperienceIdHash: r.chance(0.3) };
  }
  if (r.chance(0.3)) sdk.environment = r.pick(['staging', 'production']);
  const requests = {
    visitors: { config: cfg, sdk, state: 'shared', captureTracking: true, cases: cases(r, cfg) },
    features: { config: cfg, sdk, state: 'isolated', captureTracking: false, cases: featureCases(r, cfg) },
  };
  let bad = 0;
  for (const [name, request] of Object.entries(requests)) {
    const file = path.join(OUT, `differential-${seed}-${name}.request.json`);
    fs.writeFileSync(file, JSON.stringify(request, null, 1));
    const js = runTool(process.execPath, [path.join(__dirname, 'batch.js')], file);
    const ours = runTool(CONVERT, ['batch'], file);
    count(js);
    neutralise(js);
    reportSegmentsOnly(js);
    neutralise(ours);
    let differing = 0;
    for (let i = 0; i < Math.max(js.length, ours.length); i++) {
      if (stable(js[i]) !== stable(ours[i])) {
        if (differing === 0) {
          process.stdout.write(`seed ${seed}: case ${i} differs (request: ${file})\n`);
          process.stdout.write(`  case: ${JSON.stringify(request.cases[i])}\n`);
          process.stdout.write(`  js:   ${stable(js[i])}\n  rust: ${stable(ours[i])}\n`);
        }
        differing++;
      }
    }
    if (differing === 0) fs.unlinkSync(file);
    bad += differing;
  }
  if (bad) failed++;
}
process.stdout.write(`reference answers: ${JSON.stringify(seen)}\n`);
process.stdout.write(`${ROUNDS - failed} of ${ROUNDS} rounds agree (seeds ${FIRST_SEED}..${FIRST_SEED + ROUNDS - 1})\n`);
process.exit(failed ? 1 : 0);
