#!/usr/bin/env node
// Writes the golden batch requests under tests/golden/. Run by `cargo xtask vectors` before the
// reference SDK replays them. The configs are the project's own.
'use strict';

const fs = require('fs');
const path = require('path');

const OUT = path.join(__dirname, '..', '..', 'tests', 'golden');
fs.mkdirSync(OUT, { recursive: true });

const base = (extra) => Object.assign({ account_id: '500100', project: { id: '600200' } }, extra);
const opts = { settings: { matching_options: { audiences: 'any', locations: 'any' } } };
const visitors = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
const rule = (key, matchType, value, negated = false, ruleType = 'generic_text_key_value') =>
  ({ rule_type: ruleType, key, matching: { match_type: matchType, negated }, value });
const tree = (...ands) => ({ OR: ands.map((ors) => ({ AND: ors.map((items) => ({ OR_WHEN: items })) })) });

// Readable requests: everything but the cases is indented; each case is one line.
function format(request) {
  const { cases, ...rest } = request;
  const lines = cases.map((c) => `    ${JSON.stringify(c)}`).join(',\n');
  const head = Object.keys(rest).length ? `${JSON.stringify(rest, null, 2).slice(0, -2)},\n` : '{\n';
  return `${head}  "cases": [\n${lines}\n  ]\n}\n`;
}

function write(name, request, dir = OUT) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${name}.request.json`), format(request));
}

// 1. Packed walk order and allocation edge cases (experience version <= 11).
{
  const exps = [
    ['numeric-desc', [['300', 10], ['200', 80], ['100', 10]]],
    ['named', [['C', 10], ['B', 80], ['A', 10]]],
    ['mixed', [['20', 25], ['b', 25], ['3', 25], ['a', 25]]],
    ['leading-zero', [['010', 50], ['9', 50]]],
    ['beyond-index', [['4294967295', 50], ['4294967294', 50]]],
    ['duplicates', [['7', 10], ['6', 40], ['7', 50]]],
    ['fractions', [['1003', 33.4], ['1002', 33.3], ['1001', 33.3]]],
    ['absent-null-string', [['41', undefined], ['42', null], ['43', '30'], ['44', 'abc']]],
    ['stopped', [['51', 50, 'stopped'], ['52', 50], ['53', 50, 'Running']]],
    ['under-100', [['61', 20], ['62', 20]]],
  ];
  const experiences = exps.map(([key, arms], i) => Object.assign({
    id: String(910000 + i), key, name: key, type: 'a/b_fullstack',
    version: i % 2 ? 11 : undefined, audiences: [], goals: [],
    variations: arms.map(([id, ta, status]) => {
      const v = { id, key: `var-${id}`, name: `Variation ${id}` };
      if (ta !== undefined) v.traffic_allocation = ta;
      if (status !== undefined) v.status = status;
      return v;
    }),
  }, opts));
  const cases = [];
  for (const e of experiences) {
    for (const v of visitors(`walk-${e.key}`, 12)) {
      cases.push({ op: 'runExperience', visitorId: v, key: e.key, ignoreLocationProperties: true, enableTracking: false });
    }
  }
  // Ids the walk selects but the reference returns as another variation: it looks the selected
  // id up among the string ids, so a numeric id returns its string twin (or nothing) and a
  // duplicated id the first variation that has it.
  const twins = [
    ['numeric-twin', [[71, 'numeric', 50], ['71', 'string', 50]]],
    ['numeric-alone', [[72, 'numeric', 50], ['73', 'string', 50]]],
    ['string-twins', [['74', 'first', 30], ['75', 'other', 40], ['74', 'second', 30]]],
  ];
  twins.forEach(([key, arms], i) => {
    experiences.push(Object.assign({
      id: String(919000 + i), key, name: key, type: 'a/b_fullstack', audiences: [], goals: [],
      variations: arms.map(([id, vkey, ta]) => ({ id, key: vkey, traffic_allocation: ta })),
    }, opts));
    for (const v of visitors(`twin-${key}`, 12)) {
      cases.push({ op: 'runExperience', visitorId: v, key, ignoreLocationProperties: true, enableTracking: false });
    }
  });
  // An experience id served as a number: decided as its string, echoed as a number.
  experiences.push(Object.assign({
    id: 919010, key: 'numeric-experience-id', name: 'numeric-experience-id', type: 'a/b_fullstack', audiences: [], goals: [],
    variations: [{ id: '919011', key: 'a', traffic_allocation: 50 }, { id: '919012', key: 'b', traffic_allocation: 50 }],
  }, opts));
  for (const v of visitors('numeric-experience', 4)) {
    cases.push({ op: 'runExperience', visitorId: v, key: 'numeric-experience-id', ignoreLocationProperties: true, enableTracking: false });
  }
  write('packed-walk', { config: base({ experiences }), captureTracking: false, cases });
}

// 2. Unicode and unusual visitor ids, raw hashes and bucket values.
{
  const ids = ['visitor-1', 'Ünïcødé-😀', '用户123', 'café', 'cafe\u0301', '👩🏽‍💻', '𝕏𝕐ℤ', 'مرحبا',
    ' leading space', 'trailing space ', 'tab\there', 'a'.repeat(300), '0', '-1', '99999999999999999999', 'a"quote'];
  const experiences = [Object.assign({
    id: '920001', key: 'unicode', name: 'unicode', type: 'a/b_fullstack', audiences: [], goals: [],
    variations: [{ id: '920101', key: 'one', traffic_allocation: 30 }, { id: '920102', key: 'two', traffic_allocation: 30 },
      { id: '920103', key: 'three', traffic_allocation: 40 }],
  }, opts)];
  const cases = [];
  for (const id of ids) {
    cases.push({ op: 'runExperience', visitorId: id, key: 'unicode', locationProperties: {} });
    cases.push({ op: 'bucketValue', visitorId: id, experienceId: '920001', seed: 9999 });
    cases.push({ op: 'hash', input: id, seed: 9999 });
    cases.push({ op: 'hash', input: id, seed: 1 });
  }
  write('unicode-visitors', { config: base({ experiences }), captureTracking: true, cases });
}

// 3. Feature roster, variable casting and typed variables.
{
  const features = [
    { id: '300', key: 'f-300', name: 'Three hundred', variables: [{ key: 'on', type: 'boolean' }, { key: 'n', type: 'integer' }] },
    { id: '20', key: 'f-20', name: 'Twenty', variables: [{ key: 'price', type: 'float' }, { key: 'cfg', type: 'json' }] },
    { id: 'abc', key: 'f-abc', name: 'Letters', variables: [{ key: 'label', type: 'string' }] },
    { id: '5', key: 'f-5', name: 'Five', variables: [] },
    { id: '70', key: 'f-70', name: 'Seventy', variables: [{ key: 'a', type: 'boolean' }, { key: 'b', type: 'boolean' },
      { key: 'c', type: 'integer' }, { key: 'd', type: 'integer' }, { key: 'e', type: 'integer' }, { key: 'f', type: 'float' },
      { key: 'g', type: 'json' }, { key: 'h', type: 'json' }, { key: 'i', type: 'string' }, { key: 'j', type: 'float' }] },
  ];
  const change = (fid, vars) => ({ id: Number(fid.length), type: 'fullStackFeature', data: { feature_id: fid, variables_data: vars } });
  const experiences = [
    Object.assign({ id: '930001', key: 'feat-exp-a', name: 'A', type: 'a/b_fullstack', audiences: [], goals: [], variations: [
      { id: '930101', key: 'a1', traffic_allocation: 50, changes: [change('300', { on: 'true', n: '42.9' }), change('20', { price: '9.99', cfg: '{"x":[1,2]}' })] },
      { id: '930102', key: 'a2', traffic_allocation: 50, changes: [change('300', { on: 'false', n: '0x10' })] },
    ] }, opts),
    Object.assign({ id: '930002', key: 'feat-exp-b', name: 'B', type: 'a/b_fullstack', audiences: [], goals: [], variations: [
      { id: '930201', key: 'b1', traffic_allocation: 100, changes: [
        change('70', { a: 'False', b: '', c: '1e3', d: ' 12 ', e: 'abc', f: '3.9abc', g: '{bad', h: 12, i: 1e21, j: true }),
        change('abc', { label: 7 }),
      ] },
    ] }, opts),
  ];
  const cases = [];
  for (const v of visitors('feat', 10)) {
    cases.push({ op: 'runFeatures', visitorId: v, locationProperties: {} });
  }
  for (const v of visitors('single', 6)) {
    cases.push({ op: 'runFeature', visitorId: v, key: 'f-300', locationProperties: {} });
    cases.push({ op: 'runFeature', visitorId: v, key: 'f-70', locationProperties: {} });
    cases.push({ op: 'runFeature', visitorId: v, key: 'f-5', locationProperties: {} });
  }
  cases.push({ op: 'runFeature', visitorId: 'single-0', key: 'undeclared', locationProperties: {} });
  // Feature decisions without tracking capture: convert-rs decides fewer experiences by design (Part A Q11).
  write('features', { config: base({ features, experiences }), captureTracking: false, cases });
}

// 4. Tracking payloads: segments, batching, several visitors.
{
  const experiences = [1, 2, 3].map((n) => Object.assign({
    id: String(940000 + n), key: `track-${n}`, name: `Track ${n}`, type: 'a/b_fullstack', audiences: [], goals: [],
    variations: [{ id: String(940100 + n * 10 + 1), key: 'x', traffic_allocation: 50 }, { id: String(940100 + n * 10 + 2), key: 'y', traffic_allocation: 50 }],
  }, opts));
  const cases = [
    { id: 'segments-at-creation', op: 'runExperience', visitorId: 't-1', key: 'track-1', locationProperties: {},
      visitorAttributes: { country: 'DE', browser: 'FF', devices: ['DESK'], plan: 'pro' } },
    { id: 'default-segments', op: 'setDefaultSegments', visitorId: 't-2', segments: { source: 'campaign', campaign: 'spring', visitorType: 'new' } },
    { op: 'runExperience', visitorId: 't-2', key: 'track-2', locationProperties: {} },
    { id: 'all-three', op: 'runExperiences', visitorId: 't-3', locationProperties: {} },
    { id: 'sticky-no-event', op: 'runExperience', visitorId: 't-3', key: 'track-1', locationProperties: {} },
    { id: 'tracking-off', op: 'runExperience', visitorId: 't-4', key: 'track-1', locationProperties: {}, enableTracking: false },
    { id: 'forced', op: 'runExperience', visitorId: 't-5', key: 'track-2', locationProperties: {}, forceVariationId: '940122' },
    { id: 'seeded', op: 'seedBucketing', visitorId: 't-6', bucketing: { 940003: '940131' } },
    { op: 'runExperience', visitorId: 't-6', key: 'track-3', locationProperties: {} },
    { op: 'getVisitorData', visitorId: 't-6' },
    { op: 'getVisitorData', visitorId: 't-1' },
  ];
  write('tracking', { config: base({ experiences }), state: 'shared', captureTracking: true, cases });
  // Size-triggered release: batch of 2 events across visitors inside one case.
  const batched = [];
  for (const v of visitors('batch', 4)) batched.push({ op: 'runExperiences', visitorId: v, locationProperties: {} });
  write('tracking-batches', { config: base({ experiences }), sdk: { events: { batch_size: 2 } }, state: 'shared', captureTracking: true, cases: batched });
}

// 5. Conversions: first, repeat, forced, revenue, goal rules.
{
  const experiences = [Object.assign({
    id: '950001', key: 'conv-exp', name: 'Conv', type: 'a/b_fullstack', audiences: [], goals: [],
    variations: [{ id: '950101', key: 'c1', traffic_allocation: 50 }, { id: '950102', key: 'c2', traffic_allocation: 50 }],
  }, opts)];
  const goals = [
    { id: '951', key: 'purchase', name: 'Purchase', type: 'revenue', rules: null },
    { id: '952', key: 'signup', name: 'Signup', type: 'advanced', rules: tree([[rule('action', 'equals', 'signup'), rule('action', 'equals', 'register')]]) },
    { id: 953, key: 'numeric-id', name: 'Numeric id', type: 'advanced' },
  ];
  const cases = [
    { id: 'first', op: 'trackConversion', visitorId: 'c-1', key: 'purchase', revenue: 19.99, conversionData: [{ key: 'productsCount', value: 3 }, { key: 'transactionId', value: 'T-1' }] },
    { id: 'repeat', op: 'trackConversion', visitorId: 'c-1', key: 'purchase', revenue: 5 },
    { id: 'forced', op: 'trackConversion', visitorId: 'c-1', key: 'purchase', revenue: 7.5, conversionSetting: { forceMultipleTransactions: true } },
    { id: 'forced-no-data', op: 'trackConversion', visitorId: 'c-1', key: 'purchase', conversionSetting: { forceMultipleTransactions: true } },
    { id: 'after-bucketing', op: 'runExperience', visitorId: 'c-2', key: 'conv-exp', locationProperties: {}, visitorAttributes: { country: 'FR' } },
    { op: 'trackConversion', visitorId: 'c-2', key: 'purchase' },
    { id: 'rule-match', op: 'trackConversion', visitorId: 'c-3', key: 'signup', ruleData: { action: 'REGISTER' } },
    { id: 'rule-miss', op: 'trackConversion', visitorId: 'c-4', key: 'signup', ruleData: { action: 'buy' } },
    { id: 'rule-skipped-without-data', op: 'trackConversion', visitorId: 'c-5', key: 'signup' },
    { id: 'ruleless-with-data', op: 'trackConversion', visitorId: 'c-6', key: 'purchase', ruleData: { action: 'buy' } },
    { id: 'unknown-goal', op: 'trackConversion', visitorId: 'c-7', key: 'nope' },
    { id: 'numeric-goal-id', op: 'trackConversion', visitorId: 'c-8', key: 'numeric-id', conversionData: [{ key: 'amount', value: 1e21 }, { key: 'customDimension1', value: 0.1 }] },
    { op: 'getVisitorData', visitorId: 'c-1' },
  ];
  write('conversions', { config: base({ experiences, goals }), state: 'shared', captureTracking: true, cases });
}

// 6. Targeting: audiences, locations, site areas, environments, archived, forced, sticky, segments.
{
  const audiences = [
    { id: '961', key: 'mobile', type: 'transient', rules: tree([[rule('device', 'equals', 'mobile')]]) },
    { id: '962', key: 'big-cart', type: 'transient', rules: tree([[rule('cart', 'less', 3, true, 'generic_numeric_key_value')]]) },
    { id: '963', key: 'first-visit', type: 'permanent', rules: tree([[rule('visits', 'equals', 1, false, 'generic_numeric_key_value')]]) },
    { id: '964', key: 'lang', type: 'transient', rules: tree([[rule('lang', 'isIn', 'en|de|fr')]], [[rule('country', 'startsWith', 'u')]]) },
  ];
  const segments = [{ id: '971', key: 'vip', name: 'VIP', rules: tree([[rule('ltv', 'less', 1000, true, 'generic_numeric_key_value')]]) },
    { id: '972', key: 'all', name: 'All', rules: tree([[rule('ltv', 'exists', undefined)]]) }];
  const locations = [
    { id: '981', key: 'cart-page', name: 'Cart', rules: tree([[rule('url', 'contains', '/cart', false, 'url')]]) },
    { id: '982', key: 'checkout-page', name: 'Checkout', rules: tree([[rule('url', 'regexMatches', '/checkout(/|$)', false, 'url')]]) },
  ];
  const v = (id) => [{ id: `${id}1`, key: 'control', traffic_allocation: 50 }, { id: `${id}2`, key: 'treatment', traffic_allocation: 50 }];
  const experiences = [
    Object.assign({ id: '960001', key: 'any-audience', type: 'a/b_fullstack', audiences: ['961', '962'], variations: v('96001') }, opts),
    Object.assign({ id: '960002', key: 'all-audiences', type: 'a/b_fullstack', audiences: ['961', '962'], variations: v('96002') },
      { settings: { matching_options: { audiences: 'all', locations: 'any' } } }),
    Object.assign({ id: '960003', key: 'permanent', type: 'a/b_fullstack', audiences: ['963'], variations: v('96003') }, opts),
    Object.assign({ id: '960004', key: 'located', type: 'a/b_fullstack', locations: ['981', '982'], variations: v('96004') }, opts),
    Object.assign({ id: '960005', key: 'site-area', type: 'a/b_fullstack', site_area: tree([[rule('url', 'startsWith', 'https://shop.')]]), variations: v('96005') }, opts),
    Object.assign({ id: '960006', key: 'production-only', type: 'a/b_fullstack', environment: 'production', variations: v('96006') }, opts),
    Object.assign({ id: '960007', key: 'archived', type: 'a/b_fullstack', variations: v('96007') }, opts),
    Object.assign({ id: '960008', key: 'segment-gated', type: 'a/b_fullstack', audiences: ['971'], variations: v('96008') }, opts),
    Object.assign({ id: '960009', key: 'language', type: 'a/b_fullstack', audiences: ['964'], variations: v('96009') }, opts),
    // A forced variation where the allocation walk selects nothing: every arm stopped, or arms
    // covering 30 % of the range (the bucket value is reported only when the walk selected one).
    Object.assign({ id: '960010', key: 'forced-stopped', type: 'a/b_fullstack',
      variations: [{ id: '960101', key: 'only', traffic_allocation: 100, status: 'stopped' }] }, opts),
    Object.assign({ id: '960011', key: 'forced-partial', type: 'a/b_fullstack',
      variations: [{ id: '960111', key: 'small', traffic_allocation: 10 }, { id: '960112', key: 'medium', traffic_allocation: 20 }] }, opts),
  ];
  const L = (url) => ({ url });
  const cases = [
    { id: 'any-hit', op: 'runExperience', visitorId: 'g-1', key: 'any-audience', attributes: { device: 'MOBILE' }, locationProperties: {} },
    { id: 'any-miss', op: 'runExperience', visitorId: 'g-2', key: 'any-audience', attributes: { device: 'desktop', cart: 1 }, locationProperties: {} },
    { id: 'any-hit-cart', op: 'runExperience', visitorId: 'g-3', key: 'any-audience', attributes: { cart: '3' }, locationProperties: {} },
    { id: 'all-miss', op: 'runExperience', visitorId: 'g-4', key: 'all-audiences', attributes: { device: 'mobile', cart: 1 }, locationProperties: {} },
    { id: 'all-hit', op: 'runExperience', visitorId: 'g-5', key: 'all-audiences', attributes: { device: 'mobile', cart: 5 }, locationProperties: {} },
    { id: 'missing-attr-negated', op: 'runExperience', visitorId: 'g-6', key: 'all-audiences', attributes: { device: 'mobile' }, locationProperties: {} },
    { id: 'permanent-first', op: 'runExperience', visitorId: 'g-7', key: 'permanent', attributes: { visits: 1 }, locationProperties: {} },
    { id: 'permanent-sticky', op: 'runExperience', visitorId: 'g-7', key: 'permanent', attributes: { visits: 5 }, locationProperties: {} },
    { id: 'permanent-new-visitor', op: 'runExperience', visitorId: 'g-8', key: 'permanent', attributes: { visits: 5 }, locationProperties: {} },
    { id: 'location-cart', op: 'runExperience', visitorId: 'g-9', key: 'located', locationProperties: L('https://shop.example/cart') },
    { id: 'location-checkout', op: 'runExperience', visitorId: 'g-10', key: 'located', locationProperties: L('https://shop.example/checkout') },
    { id: 'location-miss', op: 'runExperience', visitorId: 'g-11', key: 'located', locationProperties: L('https://shop.example/') },
    { id: 'location-ignored', op: 'runExperience', visitorId: 'g-12', key: 'located', ignoreLocationProperties: true },
    { op: 'getVisitorData', visitorId: 'g-10' },
    { id: 'site-area-hit', op: 'runExperience', visitorId: 'g-13', key: 'site-area', locationProperties: L('HTTPS://SHOP.example/x') },
    { id: 'site-area-miss', op: 'runExperience', visitorId: 'g-14', key: 'site-area', locationProperties: L('https://blog.example/') },
    { id: 'env-miss', op: 'runExperience', visitorId: 'g-15', key: 'production-only', locationProperties: {} },
    { id: 'env-override', op: 'runExperience', visitorId: 'g-15', key: 'production-only', locationProperties: {}, environment: 'production' },
    { id: 'archived', op: 'runExperience', visitorId: 'g-16', key: 'archived', locationProperties: {} },
    { id: 'forced', op: 'runExperience', visitorId: 'g-17', key: 'any-audience', attributes: { device: 'mobile' }, locationProperties: {}, forceVariationId: '960012' },
    { id: 'forced-unknown', op: 'runExperience', visitorId: 'g-18', key: 'any-audience', attributes: { device: 'mobile' }, locationProperties: {}, forceVariationId: '1' },
    { id: 'unknown-key', op: 'runExperience', visitorId: 'g-19', key: 'nope', locationProperties: {} },
    { id: 'segment-before', op: 'runExperience', visitorId: 'g-20', key: 'segment-gated', locationProperties: {} },
    { id: 'custom-segments', op: 'runCustomSegments', visitorId: 'g-20', segmentKeys: ['vip', 'all'], ruleData: { ltv: 5000 } },
    { id: 'segment-after', op: 'runExperience', visitorId: 'g-20', key: 'segment-gated', locationProperties: {} },
    { id: 'custom-segments-miss', op: 'runCustomSegments', visitorId: 'g-21', segmentKeys: ['vip'], ruleData: { ltv: 10 } },
    { id: 'isin-case', op: 'runExperience', visitorId: 'g-22', key: 'language', attributes: { lang: 'EN' }, locationProperties: {} },
    { id: 'isin-hit', op: 'runExperience', visitorId: 'g-23', key: 'language', attributes: { lang: 'de' }, locationProperties: {} },
    { id: 'or-branch', op: 'runExperience', visitorId: 'g-24', key: 'language', attributes: { country: 'US' }, locationProperties: {} },
    { id: 'update-props', op: 'updateVisitorProperties', visitorId: 'g-25', properties: { device: 'mobile' } },
    { id: 'stored-props-used', op: 'runExperience', visitorId: 'g-25', key: 'any-audience', locationProperties: {}, enableTracking: false },
    { op: 'getConfigEntity', visitorId: 'g-1', key: 'vip', entityType: 'segment' },
    { op: 'getConfigEntityById', visitorId: 'g-1', id: '982', entityType: 'location' },
    { op: 'getConfigEntity', visitorId: 'g-1', key: 'treatment', entityType: 'variation' },
    { op: 'getConfigEntity', visitorId: 'g-1', key: 'nope', entityType: 'goal' },
    { id: 'forced-stopped', op: 'runExperience', visitorId: 'g-30', key: 'forced-stopped', locationProperties: {}, forceVariationId: '960101' },
    { id: 'stopped-unforced', op: 'runExperience', visitorId: 'g-31', key: 'forced-stopped', locationProperties: {} },
    ...visitors('g-partial', 6).flatMap((visitorId) => [
      { id: 'partial-unforced', op: 'runExperience', visitorId, key: 'forced-partial', locationProperties: {}, enableTracking: false },
      { id: 'partial-forced', op: 'runExperience', visitorId: `${visitorId}-f`, key: 'forced-partial', locationProperties: {}, forceVariationId: '960112' },
    ]),
  ];
  write('targeting', {
    config: base({ experiences, audiences, segments, locations, archived_experiences: ['960007'] }),
    state: 'shared', captureTracking: true, cases,
  });
}

// 7. Engine operations: selectBucket, ruleMatch, compare.
{
  const cases = [
    { op: 'selectBucket', buckets: { 300: 10, 200: 80, 100: 10 }, value: 102 },
    { op: 'selectBucket', buckets: { b: 50, 10: 25, a: 25 }, value: 2600 },
    { op: 'selectBucket', buckets: { x: 0, y: 0 }, value: 0 },
    { op: 'selectBucket', buckets: { 1: 30, 2: 30, 3: 30 }, value: 9500 },
    { op: 'ruleMatch', data: { a: 'X', b: 2 }, ruleSet: tree([[rule('a', 'equals', 'x')], [rule('b', 'lessEqual', '2')]]) },
    { op: 'ruleMatch', data: {}, ruleSet: tree([[rule('a', 'doesNotExist', undefined)]]) },
    { op: 'ruleMatch', data: { a: 1 }, ruleSet: { OR: [] } },
    { op: 'ruleMatch', data: { A: 'x' }, ruleSet: tree([[rule('a', 'equals', 'x')]]) },
  ];
  const compares = [
    ['equals', 'US', 'us', false], ['equals', ['a', 'b'], 'b', false], ['equals', { k: 1 }, 'k', false], ['equals', 10, '10.0', false],
    ['less', '1,000.5', 1001, false], ['less', 'orange', 4, true], ['lessEqual', '0,5', 0.5, false], ['less', 'b', 'a', true],
    ['contains', 'Hello World', 'O W', false], ['contains', 'x', '   ', false], ['isIn', 'A', 'a|b', false], ['isIn', 'b|z', ['B', 'C'], false],
    ['startsWith', 'Prefix', 'pre', false], ['endsWith', 'suffix', 'FIX', true], ['regexMatches', 'Order-123', 'order-\\d+$', false],
    ['regexMatches', 'abc', '[', false], ['exists', '', null, false], ['exists', 0, null, false], ['not_exists', null, null, false],
  ];
  compares.forEach(([method, value, testAgainst, negation], i) => {
    const id = method === 'regexMatches' && testAgainst === '[' ? 'invalid-regex' : `compare-${i}`;
    cases.push({ id, op: 'compare', method, value, testAgainst, negation });
  });
  write('engine-ops', { captureTracking: false, cases });
}

// 7b. regexMatches with ECMAScript semantics (SPEC Part A Q28): look-ahead, look-behind,
// backreferences (numbered, named, to a group that has not captured), Annex B syntax, the `i`
// flag on a lower-cased value, UTF-16 code units, patterns JavaScript rejects; then the same
// constructs in site areas, locations, audiences, custom segments and goal rules. Then what
// only a matcher with ECMAScript's own semantics gets right: captures reset at each iteration of a
// quantified group, look-behind read from right to left (its captures and backreferences), a
// quantified group holding a look-around, and a program too large for the linear engine.
{
  const compares = [
    ['Free trial', '^(?!free)', false], ['paid plan', '^(?!free)', false], ['free', '^(?!free)', true],
    ['hello', '^(?=.*e).+$', false], ['world', '^(?=.*e).+$', false], ['world', '^(?=.*e).+$', true],
    ['aa', '(.)\\1', false], ['ab', '(.)\\1', false], ['ab', '(.)\\1', true], ['Book', '(.)\\1', false],
    ['cost $12', '(?<=\\$)\\d+', false], ['cost 12', '(?<=\\$)\\d+', false], ['xy', '(?<!x)y', false], ['ay', '(?<!x)y', false],
    ['aaab', '(?<=a+)b', false], ['xaab', '(?<=^xa{2})b', false], ['xyyz', '(?<c>.)\\k<c>', false], ['xyz', '(?<c>.)\\k<c>', false],
    ['aA', '^(A)\\1$', false], ['ΣΣ', '^(.)\\1$', false], ['b', '(a)?\\1b', false], ['a', '\\1(a)', false], ['x', '(a)|\\1x', false],
    ['b', '^(?=a)*b', false], ['a', '^(?=a)+a', false], ['b', '^(?=a)+b', false],
    ['b', '^(?=a)*?b', false], ['a foo!', '\\bfoo\\b(?=!)', false], ['afoo!', '\\bfoo\\b(?=!)', false], ['é', '(?=x)|\\Bé', false],
    ['😀', '^(?=.)..$', false], ['😀', '^(?=.).$', false], ['a]', 'a(?=]$)', false], ['a{,2}', '(?=a)a{,2}', false],
    ['ſ', '(?=s)', false], ['\\c', '^(?=\\\\)\\c$', false], ['a1', '(?=\\w)\\1', false], ['a\u0001', '(a)(?=\\1)', false],
    ['Order-123', '^(?!.*test)order-(\\d)\\d*$', false], [12321, '^(\\d)(\\d)\\d\\2\\1$', false], [true, '^(?=t)true$', false],
    ['abab', '^(?:(a)|b)+\\1$', false], ['aba', '^(?:(a)|b)+\\1$', false], ['abac', '^(?:(a)|b){2}\\1c$', false],
    ['abc', '^(?:(a)|b){2}\\1c$', false], ['zaza', '^(?:z(a)?){2}\\1$', false], ['zaz', '^(?:z(a)?){2}\\1$', false],
    ['aab', '(?<=\\1(a))b', false], ['cab', '(?<=\\1(a))b', false], ['1053-1', '^(?=.*(?<=(\\d+)(\\d+))-)\\d*-\\1$', false],
    ['1053-053', '^(?=.*(?<=(\\d+)(\\d+))-)\\d*-\\1$', false], ['xx', '(?:(?=x))+x', false], ['b', '(?:(?!a))?b', false],
    ['ab', '^a(?:(?<=a))*b$', false], ['ba', '(?<=(b)|(a))a\\2', false], ['aab', '^(?:a|(?=b))*b', false],
    ['ab', '^(?:(?=(a)))*\\1b', false], ['ab', '^(?:(?=(a))){1}\\1b', false],
    // Case-insensitive classes and literals where the Unicode simple case folding of the linear
    // engine's tables and ECMAScript's Canonicalize differ: ΐ U+0390 and ΐ U+1FD3, ΰ U+03B0 and
    // ΰ U+1FE3, ﬅ U+FB05 and ﬆ U+FB06 fold together but match only themselves in JS; ꟎ U+A7CE
    // and ꟏ U+A7CF (Unicode 17) are equivalent in JS.
    ['В𝐀ß0ΰ', '[a\\u1f88-ⰰ]', false], ['ÿΐǰ', '[ᾼ-\\u2028\\u0130\\d]', false], ['ΐ', '\\u1fd3', false],
    ['ΐ', '^[^\\u1fd3]$', false], ['ﬅ', '\\ufb06', false], ['\ua7cf', '[\\ua7ce]', false], ['\ua7ce', '^\\ua7cf$', false],
    ['\ua7ce', '[\\ua7c0-\\ua7ce]', false], ['\ua7d3', '^[^\\ua7d2]$', false],
    // `\B` holds between the bytes of a non-ASCII character in the linear engine's UTF-8 search,
    // a position JavaScript does not have: a search must not stop there.
    ['aéa', '\\B|é', false], ['a aéa', '\\B|é|]|]', false], ['aéa', '\\B', false],
  ];
  const cases = compares.map(([value, testAgainst, negation], i) =>
    ({ id: `regex-${i}`, op: 'compare', method: 'regexMatches', value, testAgainst, negation }));
  // Patterns JavaScript rejects: the raw comparator throws, so they go through the rule engine,
  // where the rule is false whether negated or not.
  const rejected = [
    ['aab', '(?<=a)*b', false], ['aab', '(?<=a)*b', true], ['aa', 'a{2,1}', false], ['aa', 'a{2,1}', true],
    ['ab', '(?<n>a)\\k<m>', true], ['ab', '(?<n>a)\\k', true], ['ab', '(a))', true], ['ab', '(?<n>a)(?<n>b)', true],
  ];
  rejected.forEach(([value, pattern, negated], i) => cases.push({
    id: `regex-rejected-${i}`, op: 'ruleMatch', data: { v: value }, ruleSet: tree([[rule('v', 'regexMatches', pattern, negated)]]),
  }));
  // A program too large for the linear engine (a thousand times a thousand `a`s) still runs.
  [['a', true], ['aa', false]].forEach(([value, negated], i) => cases.push({
    id: `regex-large-${i}`, op: 'ruleMatch', data: { v: value }, ruleSet: tree([[rule('v', 'regexMatches', '(?:a{1000}){1000}', negated)]]),
  }));
  cases.push({ id: 'regex-tree', op: 'ruleMatch', data: { a: 'Hello', b: 'xx' },
    ruleSet: tree([[rule('a', 'regexMatches', '^(?!h)', false)], [rule('b', 'regexMatches', '(x)\\1', false)]],
      [[rule('a', 'regexMatches', '(?<=l)l', false)], [rule('b', 'regexMatches', '^(?!(.)\\1)', true)]]) });
  const audiences = [
    { id: '941', key: 'not-free', type: 'transient', rules: tree([[rule('plan', 'regexMatches', '^(?!free)')]]) },
    { id: '942', key: 'doubled', type: 'permanent', rules: tree([[rule('code', 'regexMatches', '(.)\\1')]]) },
  ];
  const segments = [{ id: '943', key: 'e-names', name: 'E names', rules: tree([[rule('name', 'regexMatches', '^(?=.*e).+$')]]) }];
  const locations = [
    { id: '944', key: 'shop-not-admin', name: 'Shop', rules: tree([[rule('url', 'regexMatches', '^(?!.*/admin)(?=.*/shop)', false, 'url')]]) },
  ];
  const v = (id) => [{ id: `${id}1`, key: 'control', traffic_allocation: 50 }, { id: `${id}2`, key: 'treatment', traffic_allocation: 50 }];
  const experiences = [
    Object.assign({ id: '940001', key: 're-audience', type: 'a/b_fullstack', audiences: ['941'], variations: v('94001') }, opts),
    Object.assign({ id: '940002', key: 're-permanent', type: 'a/b_fullstack', audiences: ['942'], variations: v('94002') }, opts),
    Object.assign({ id: '940003', key: 're-location', type: 'a/b_fullstack', locations: ['944'], variations: v('94003') }, opts),
    Object.assign({ id: '940004', key: 're-site-area', type: 'a/b_fullstack', site_area: tree([[rule('url', 'regexMatches', '(?<=//)shop\\.', false, 'url')]]), variations: v('94004') }, opts),
    Object.assign({ id: '940005', key: 're-segment', type: 'a/b_fullstack', audiences: ['943'], variations: v('94005') }, opts),
  ];
  const goals = [{ id: '945', key: 're-goal', name: 'Regex goal', type: 'advanced', rules: tree([[rule('action', 'regexMatches', '^(?!test)(\\w)\\w*\\1$')]]) }];
  const L = (url) => ({ url });
  cases.push(
    { id: 're-audience-hit', op: 'runExperience', visitorId: 'r-1', key: 're-audience', attributes: { plan: 'Pro' }, locationProperties: {} },
    { id: 're-audience-miss', op: 'runExperience', visitorId: 'r-2', key: 're-audience', attributes: { plan: 'FREE-tier' }, locationProperties: {} },
    { id: 're-permanent-first', op: 'runExperience', visitorId: 'r-3', key: 're-permanent', attributes: { code: 'xyyz' }, locationProperties: {} },
    { id: 're-permanent-sticky', op: 'runExperience', visitorId: 'r-3', key: 're-permanent', attributes: { code: 'xyz' }, locationProperties: {} },
    { id: 're-permanent-miss', op: 'runExperience', visitorId: 'r-4', key: 're-permanent', attributes: { code: 'xyz' }, locationProperties: {} },
    { id: 're-location-hit', op: 'runExperience', visitorId: 'r-5', key: 're-location', locationProperties: L('https://x.example/shop/item') },
    { id: 're-location-admin', op: 'runExperience', visitorId: 'r-6', key: 're-location', locationProperties: L('https://x.example/admin/shop') },
    { op: 'getVisitorData', visitorId: 'r-5' },
    { id: 're-site-area-hit', op: 'runExperience', visitorId: 'r-7', key: 're-site-area', locationProperties: L('HTTPS://SHOP.example/') },
    { id: 're-site-area-miss', op: 'runExperience', visitorId: 'r-8', key: 're-site-area', locationProperties: L('https://myshop.example/') },
    { id: 're-segment-before', op: 'runExperience', visitorId: 'r-9', key: 're-segment', locationProperties: {} },
    { id: 're-segments', op: 'runCustomSegments', visitorId: 'r-9', segmentKeys: ['e-names'], ruleData: { name: 'Steve' } },
    { id: 're-segments-miss', op: 'runCustomSegments', visitorId: 'r-10', segmentKeys: ['e-names'], ruleData: { name: 'Otto' } },
    { id: 're-goal-hit', op: 'trackConversion', visitorId: 'r-11', key: 're-goal', ruleData: { action: 'Stats' } },
    { id: 're-goal-miss', op: 'trackConversion', visitorId: 'r-12', key: 're-goal', ruleData: { action: 'testt' } },
  );
  write('regex-semantics', {
    config: base({ experiences, audiences, segments, locations, goals }),
    state: 'shared', captureTracking: true, cases,
  });
}

// 7c. A config holding lone surrogate escapes (SPEC Part A Q29): `JSON.parse` accepts them, so
// the config loads and decides. The request is written with the escapes kept as text; they sit
// where they cannot reach an answer (names, a rule value in a branch that does not decide).
{
  const experiences = [Object.assign({
    id: '930001', key: 'lone-surrogates', name: 'Name LONE_HIGH here', type: 'a/b_fullstack', audiences: ['931'],
    variations: [{ id: '930011', key: 'control', name: 'LONE_LOW', traffic_allocation: 50 }, { id: '930012', key: 'treatment', traffic_allocation: 50 }],
  }, opts)];
  const audiences = [{ id: '931', key: 'any-plan', name: 'LONE_HIGH', type: 'transient',
    rules: tree([[rule('plan', 'equals', 'pro'), rule('plan', 'contains', 'xLONE_HIGH')]]) }];
  const cases = [
    { id: 'lone-hit', op: 'runExperience', visitorId: 's-1', key: 'lone-surrogates', attributes: { plan: 'Pro' }, locationProperties: {} },
    { id: 'lone-miss', op: 'runExperience', visitorId: 's-2', key: 'lone-surrogates', attributes: { plan: 'basic' }, locationProperties: {} },
    { id: 'lone-hit-2', op: 'runExperience', visitorId: 's-3', key: 'lone-surrogates', attributes: { plan: 'pro' }, locationProperties: {} },
  ];
  fs.mkdirSync(OUT, { recursive: true });
  const text = format({ config: base({ experiences, audiences }), captureTracking: false, cases })
    .split('LONE_HIGH').join('\\ud800').split('LONE_LOW').join('\\uDC00');
  fs.writeFileSync(path.join(OUT, 'lone-surrogates.request.json'), text);
}

// 8. Informative only (tests/golden/informative/, not compared): experiences with `version` > 11,
// numeric or string. convert-rs uses the anchored layout there (contract "v12"); 4.4.3 has no
// anchored layout and still walks the packed one, so these outputs record what the published SDK
// does, not what convert-rs must do.
{
  const exps = [
    ['v12-numeric-desc', 12, [['300', 10], ['200', 80], ['100', 10]]],
    ['v12-string', '12', [['300', 10], ['200', 80], ['100', 10]]],
    ['v13-named', 13, [['C', 10], ['B', 80], ['A', 10]]],
    ['v20-gap', 20, [['2', 40], ['1', 40]]],
  ];
  const experiences = exps.map(([key, version, arms], i) => Object.assign({
    id: String(990000 + i), key, name: key, type: 'a/b_fullstack', version, audiences: [], goals: [],
    variations: arms.map(([id, ta]) => ({ id, key: `var-${id}`, name: `Variation ${id}`, traffic_allocation: ta })),
  }, opts));
  const cases = [];
  for (const e of experiences) {
    for (const v of visitors(`anchored-${e.key}`, 12)) {
      cases.push({ op: 'runExperience', visitorId: v, key: e.key, ignoreLocationProperties: true, enableTracking: false });
    }
  }
  write('anchored-layout', { config: base({ experiences }), captureTracking: false, cases }, path.join(OUT, 'informative'));
}

// 9. Requests on a shared conformance config (tests/golden/shared-config/). Such a request names
// the config in `configFile` (relative to the shared conformance folder) instead of carrying it:
// the config is not the project's to commit. `cargo xtask vectors` and `cli/tests/golden.rs` insert
// it before replaying the request. Only the cases and the reference's answers are committed.
{
  const SHARED = path.join(OUT, 'shared-config');
  const configFile = 'derived/realistic-config.json';
  const sdk = { environment: 'staging' };
  // The permanent audience: (desktop is true and browser does not match "CH") or mobile is true.
  const profiles = [
    { desktop: true, browser: 'chrome' },
    { desktop: true, browser: 'CH' },
    { mobile: true },
    { desktop: false, mobile: false },
    { desktop: 'true', browser: 'firefox' },
    {},
  ];
  // Locations: `location` matches events / statistics / pricing; `screen` home; `feature` < 5.
  const places = [
    { location: 'pricing' },
    { location: 'events' },
    { location: 'statistics' },
    { location: 'Pricing' },
    { screen: 'home', feature: 3 },
    { feature: '7' },
  ];
  const experienceKeys = ['test-experience-ab-fullstack-1', 'test-experience-ab-fullstack-4',
    'test-experience-abc-5', 'test-experience-rollout-6'];
  const cases = [];
  visitors('realistic', 36).forEach((visitorId, i) => {
    const attributes = profiles[i % profiles.length];
    const locationProperties = places[Math.floor(i / profiles.length) % places.length];
    cases.push({ op: 'runExperiences', visitorId, attributes, locationProperties });
    // A second look: stored decisions come back without a new event.
    cases.push({ op: 'runExperience', visitorId, key: experienceKeys[i % 4], attributes, locationProperties });
    if (i % 3 === 0) {
      cases.push({ op: 'trackConversion', visitorId, key: 'button-primary-click', ruleData: { action: 'buy' },
        revenue: 19.99 + i, conversionData: [{ key: 'productsCount', value: 1 + (i % 4) }] });
      cases.push({ op: 'trackConversion', visitorId, key: 'button-primary-click', ruleData: { action: 'buy' }, revenue: 5 });
    }
    if (i % 3 === 1) {
      cases.push({ op: 'trackConversion', visitorId, key: 'button-primary-click', ruleData: { action: 'browse' } });
      cases.push({ op: 'trackConversion', visitorId, key: 'increase-engagement' });
    }
    if (i % 4 === 2) {
      cases.push({ op: 'trackConversion', visitorId, key: 'decrease-bounce-rate', ruleData: { d: 1 + (i % 3) } });
    }
    if (i % 5 === 0) {
      cases.push({ op: 'runCustomSegments', visitorId, segmentKeys: ['test-segment-1'], ruleData: { enabled: i % 2 === 0 } });
      cases.push({ op: 'getVisitorData', visitorId });
    }
  });
  for (const [entityType, keys, ids] of [
    ['experience', ['test-experience-abc-5', 'missing'], ['100349090']],
    ['feature', ['feature-2', 'not-attached-feature-3'], ['10033']],
    ['goal', ['decrease-bounce-rate'], ['100322784']],
    ['location', ['homescreen'], ['1003351']],
    ['audience', ['adv-audience'], ['10033684']],
    ['segment', ['test-segment-1'], ['10033690']],
    ['variation', [], ['1003180892']],
  ]) {
    for (const key of keys) cases.push({ op: 'getConfigEntity', visitorId: 'realistic-0', key, entityType });
    for (const id of ids) cases.push({ op: 'getConfigEntityById', visitorId: 'realistic-0', id, entityType });
  }
  write('realistic', { configFile, sdk, state: 'shared', captureTracking: true, cases }, SHARED);

  // Features in isolation, without tracking capture (SPEC Part A Q11 changes which experiences a
  // feature call decides, which only shows in events and stored decisions).
  const featureCases = [];
  const featureKeys = ['feature-1', 'feature-2', 'feature-4', 'feature-5', 'button', 'not-attached-feature-3', 'no-such-feature'];
  visitors('realistic-feature', 18).forEach((visitorId, i) => {
    const attributes = profiles[i % profiles.length];
    const locationProperties = places[i % places.length];
    featureCases.push({ op: 'runFeatures', visitorId, attributes, locationProperties });
    featureCases.push({ op: 'runFeature', visitorId, key: featureKeys[i % featureKeys.length], attributes, locationProperties,
      typeCasting: i % 2 === 0 });
  });
  write('realistic-features', { configFile, sdk, captureTracking: false, cases: featureCases }, SHARED);
}
