#!/usr/bin/env node
// A random differential of `regexMatches` alone: random ECMAScript patterns and values, each pair
// asked as a `ruleMatch` engine operation of the batch protocol, replayed through `batch.js` (the
// published @convertcom/js-sdk 4.4.3, which answers `new RegExp(pattern, 'i').test(value
// .toLowerCase())`) and `convert batch`, compared record by record. Run by
// `cargo xtask regex-differential [--seed N] [--rounds N]`:
//
//   node regex-differential.js --convert PATH [--seed N] [--rounds N] [--patterns N] [--out DIR]
//
// Each round (seed = first seed + round) draws --patterns patterns (300 by default) from two
// sources:
// * a grammar: alternatives, sequences, quantifiers (greedy and lazy, `{n,m}` included), capturing,
//   named and non-capturing groups, numbered and named backreferences (also forward ones and ones
//   to an enclosing group), look-ahead (quantified too, as Annex B allows) and look-behind, classes
//   with ranges and escapes, and literals with case-folding corners (ß, ſ, K, İ, é, 😀). Every
//   node also writes a sample string it would match, so that many values do match;
// * token soup: random runs of pattern tokens, Annex B corners (`\8`, `\c1`, `{,2}`, `]`, `\k`
//   without named groups, octal escapes) and many patterns JavaScript rejects, which both sides
//   must answer false, negated or not.
// Every pattern gets 2-4 values: its sample (grammar patterns), the sample with noise, a string
// made of the pattern's own characters, and a random string over a small alphabet with ASCII,
// case and Unicode corners. Values never hold a lone surrogate: the JSON layer would make it
// U+FFFD on the Rust side only (docs/differences-from-js.md, "Config JSON").
//
// convert-rs gives every evaluation a work budget and answers false past it; JavaScript has none
// (docs/differences-from-js.md, "Regular expressions"). Values stay short (at most 12 code
// points), grammar patterns nest at most two quantifiers, and a pattern V8 itself needs more than
// SLOW_MS for is left out of its round. A disagreement where convert-rs went over its budget is
// marked as such; it fails the round unless V8, too, needed BUDGET_MS or more for the pattern.
//
// The reference's regular expressions are those of the Node.js that runs it: Node 20 (V8 11.3)
// rejects modifiers (`(?i:a)`) and duplicate named groups (`(?<n>a)|(?<n>b)`), as convert-rs does;
// later engines accept them, and the soup writes both now and then.
//
// A round is one request of `ruleMatch` cases (engine operations need no config). A disagreement
// prints the seed, the pattern, the value, the negation and both answers, once per pattern, and
// keeps the request in DIR/regex-differential-<seed>.request.json (DIR: the system temp folder
// unless --out says otherwise), to be replayed with either tool alone; an agreeing round's request
// is deleted. The exit status is 1 when any round disagreed.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const vm = require('vm');
const { spawnSync } = require('child_process');
const { option, rng, runTool, stable } = require('./random-run');

const CONVERT = option('--convert');
const FIRST_SEED = Number(option('--seed', String(Date.now() % 1000000)));
const ROUNDS = Number(option('--rounds', '20'));
const PATTERNS = Number(option('--patterns', '300'));
const OUT = option('--out', os.tmpdir());
if (!CONVERT) {
  process.stderr.write('regex-differential.js: --convert PATH (the convert binary) is required\n');
  process.exit(2);
}

// ---- characters -------------------------------------------------------------------------------------
// Whole code points only (😀 is one element), so that no slice of a value is a lone surrogate.
// The corners: ß, ſ (U+017F) and K (U+212A, Kelvin) fold to ASCII under full or simple case
// mapping, İ lower-cases to two code units, ς/σ/Σ and ǅ have three cases, U+2028 ends a line for `.`;
// ΐ U+0390 and ΐ U+1FD3, ΰ U+03B0 and ΰ U+1FE3, ﬅ U+FB05 and ﬆ U+FB06 share a simple case folding
// but match only themselves in JS; ꟎ U+A7CE and ꟏ U+A7CF are a case pair new in Unicode 17.
const ALPHABET = ['a', 'b', 'A', 'B', 'k', 'K', 's', 'S', 'x', 'i', 'I', '1', '0', ' ', '-', '_', '.', '/',
  'é', 'É', 'ß', 'ẞ', 'ſ', '\u212a', 'İ', 'ı', 'Σ', 'σ', 'ς', 'ǅ', '😀', '\n', '\t', '\u2028', '\u00a0',
  '\u0390', '\u1fd3', '\u03b0', '\u1fe3', '\ufb05', '\ufb06', '\ua7ce', '\ua7cf'];
const LINE_ENDS = new Set(['\n', '\r', '\u2028', '\u2029']);
const WORD = ['a', 'b', 'k', 'K', 'S', 'x', '_', '1', '0'];
const DIGITS = ['0', '1', '7', '9'];
const SPACES = [' ', '\t', '\n', '\u00a0', '\u2028', '\ufeff'];
const NOT_WORD = ['-', ' ', '.', '/', 'é', 'ß', 'ſ', '\u212a', '😀'];

function randomString(r, max) {
  let s = '';
  for (let n = r.int(max + 1); n > 0; n--) s += r.pick(ALPHABET);
  return s;
}

/** A case variant of one character, as the folding corners want to be tried. */
function recase(r, c) {
  return r.pick([c, c, c.toUpperCase(), c.toLowerCase()]);
}

// ---- grammar-based patterns ------------------------------------------------------------------------
// A node is { src, sample(caps) }: the pattern text and a generator of a string the node would
// likely match. `caps` maps group numbers and names to the last sample of the group, for the
// backreferences; look-around contributes nothing, so samples are only likely matches.

const LITERALS = [
  ['a', 'a'], ['b', 'b'], ['A', 'a'], ['x', 'x'], ['k', 'k'], ['K', 'K'], ['s', 's'], ['1', '1'], ['-', '-'],
  [' ', ' '], ['_', '_'], ['é', 'é'], ['É', 'É'], ['ß', 'ß'], ['ſ', 'ſ'], ['\u212a', '\u212a'], ['İ', 'İ'],
  ['Σ', 'σ'], ['ς', 'ς'], ['😀', '😀'], ['\\.', '.'], ['\\/', '/'], ['\\u0041', 'A'], ['\\x6b', 'k'],
  ['\\u017f', 'ſ'], ['\\u212A', 'K'], ['\\u00DF', 'ß'], ['\\u0130', 'İ'], ['\\cJ', '\n'], ['\\t', '\t'],
  ['\\n', '\n'], ['\\-', '-'], ['\\$', '$'], ['\\0', '\u0000'], ['\\u1fd3', '\u1fd3'], ['\u0390', '\u0390'],
  ['\\ufb06', '\ufb06'], ['\\ua7ce', '\ua7cf'], ['\ua7cf', '\ua7cf'],
];

// [source, members a sample may use]
const CLASSES = [
  ['[ab]', ['a', 'b', 'A']], ['[^a]', ['b', 'x', 'é', '😀']], ['[a-c]', ['a', 'b', 'c', 'B']],
  ['[A-Z]', ['a', 'K', 'z']], ['[\\w-]', ['a', '_', '-', 'K']], ['[\\dß]', ['1', 'ß']],
  ['[k]', ['k', 'K', '\u212a']], ['[s]', ['s', 'S', 'ſ']], ['[ſ]', ['ſ', 's']], ['[K]', ['K', 'k']],
  ['[é-ë]', ['é', 'ê', 'É']], ['[^\\s]', ['a', '1', 'é']], ['[\\b]', ['\b']], ['[.]', ['.']],
  ['[\\u017f-\\u0180]', ['ſ', 'ƀ']], ['[^\\W]', ['a', '1']], ['[ß-ẞ]', ['ß', 'ẞ', 'é']],
  ['[\\D]', ['a', '-']], ['[-a]', ['-', 'a']], ['[a-]', ['a', '-']], ['[\\x41-\\x43]', ['a', 'b', 'c']],
  ['[\\u1f80-\\u1fff]', ['\u1fd3', '\u1fe3', '\u1f88']], ['[\\ua7c0-\\ua7ce]', ['\ua7ce', '\ua7cf']],
  ['[^\\u0390]', ['\u1fd3', 'a']], ['[\\ufb00-\\ufb05]', ['\ufb05', '\ufb06']],
];

const ESCAPES = [
  ['\\d', DIGITS], ['\\D', ['a', '-', 'é']], ['\\w', WORD], ['\\W', NOT_WORD], ['\\s', SPACES],
  ['\\S', ['a', '1', 'é', '😀']],
];

const ASSERTIONS = ['^', '$', '\\b', '\\B'];

function grammarPattern(r) {
  const st = { groups: 0, names: [] };

  function leaf() {
    const k = r.int(10);
    if (k < 4) {
      const [src, text] = r.pick(LITERALS);
      return { src, sample: () => recase(r, text) };
    }
    if (k < 6) {
      const [src, members] = r.pick(CLASSES);
      return { src, sample: () => r.pick(members) };
    }
    if (k < 8) {
      const [src, members] = r.pick(ESCAPES);
      return { src, sample: () => r.pick(members) };
    }
    if (k < 9) {
      return { src: '.', sample: () => r.pick(ALPHABET.filter((c) => !LINE_ENDS.has(c))) };
    }
    return { src: r.pick(ASSERTIONS), sample: () => '', assertion: true };
  }

  function backreference() {
    if (st.names.length && r.chance(0.35)) {
      const name = r.pick(st.names);
      return { src: `\\k<${name}>`, sample: (caps) => caps[name] || '' };
    }
    // A group opened so far, the one being written, or one opened later (a forward reference,
    // which matches the empty string).
    const n = r.between(1, st.groups + 1);
    return { src: `\\${n}`, sample: (caps) => caps[n] || '' };
  }

  // `loops`: how many quantifiers enclose the atom. At most two are nested, so that no pattern
  // backtracks exponentially on a short value (a third level made V8 spend 19 s on 10 characters).
  function atom(depth, loops) {
    const k = depth >= 3 ? r.int(7) : r.int(15);
    if (k < 6) return leaf();
    if (k === 6) return st.groups > 0 ? backreference() : leaf();
    const inner = () => alternation(depth + 1, loops);
    switch (k) {
      case 7: case 8: {
        const n = ++st.groups;
        const body = inner();
        return { src: `(${body.src})`, sample: (caps) => (caps[n] = body.sample(caps)) };
      }
      case 9: {
        const n = ++st.groups;
        const name = `g${st.names.length}`;
        st.names.push(name);
        const body = inner();
        return { src: `(?<${name}>${body.src})`, sample: (caps) => (caps[n] = caps[name] = body.sample(caps)) };
      }
      case 10: {
        const body = inner();
        return { src: `(?:${body.src})`, sample: (caps) => body.sample(caps) };
      }
      case 11: case 12: {
        const body = inner();
        const positive = r.chance(0.5);
        // A positive look-ahead's sample is left to the text after it.
        return { src: `(?${positive ? '=' : '!'}${body.src})`, sample: () => '', lookahead: true };
      }
      default: {
        const body = inner();
        return { src: `(?<${r.pick(['=', '!'])}${body.src})`, sample: () => '', assertion: true };
      }
    }
  }

  function quantified(depth, loops) {
    const loop = loops < 2 && r.chance(0.35);
    const a = atom(depth, loops + (loop ? 1 : 0));
    // Annex B: a look-ahead may be quantified, a look-behind or an anchor may not.
    if (!loop || a.assertion || (a.lookahead && r.chance(0.6))) return a;
    const [q, lo, hi] = r.pick([['*', 0, 2], ['+', 1, 3], ['?', 0, 1], ['{2}', 2, 2], ['{1,}', 1, 3],
      ['{0,2}', 0, 2], ['{1,3}', 1, 3], ['{0}', 0, 0], ['{3,}', 3, 4]]);
    const lazy = r.chance(0.3) ? '?' : '';
    return {
      src: a.src + q + lazy,
      sample: (caps) => {
        let s = '';
        for (let n = r.between(lo, hi); n > 0; n--) s += a.sample(caps);
        return s;
      },
    };
  }

  function sequence(depth, loops) {
    const parts = [];
    for (let n = r.between(depth ? 0 : 1, 3); n > 0; n--) parts.push(quantified(depth, loops));
    return { src: parts.map((p) => p.src).join(''), sample: (caps) => parts.map((p) => p.sample(caps)).join('') };
  }

  function alternation(depth, loops) {
    const alts = [sequence(depth, loops)];
    while (depth < 4 && alts.length < 4 && r.chance(0.22)) alts.push(sequence(depth, loops));
    return { src: alts.map((a) => a.src).join('|'), sample: (caps) => r.pick(alts).sample(caps) };
  }

  const top = alternation(0, 0);
  const anchored = r.int(6);
  const src = (anchored === 0 ? '^' : '') + top.src + (anchored === 1 ? '$' : '');
  return { source: src, sample: () => top.sample({}) };
}

// ---- token soup ---------------------------------------------------------------------------------------
const TOKENS = ['a', 'b', 'A', 'k', 'K', 's', 'x', '1', '0', ' ', '-', ',', '.', '^', '$', '|', '|', '*', '+', '?',
  '??', '*?', '+?', '(', '(', '(', ')', ')', ')', '(?:', '(?=', '(?!', '(?<=', '(?<!', '(?<n>', '(?<m>',
  '(?<1>', '(?<é>', '(?<$>', '(?i)', '(?i:', '(?<', '(?', '\\1', '\\2', '\\3', '\\10', '\\k<n>', '\\k<m>',
  '\\k', '\\k<x>', '\\k<', '[', '[', ']', ']', '[^', '[]', '[^]', '[a-', '[z-a]', '[\\d-z]', '[\\b]', '\\b',
  '\\B', '\\d', '\\D', '\\w', '\\W', '\\s', '\\S', '{', '}', '{2}', '{1,}', '{,2}', '{2,1}', '{0}', '{1,2}',
  '{99999999999}', '\\c', '\\cA', '\\c1', '\\c_', '\\ca', '\\0', '\\00', '\\012', '\\377', '\\400', '\\8',
  '\\9', '\\x4', '\\x41', '\\xZZ', '\\u00', '\\u0041', '\\u{41}', '\\u{1F600}', '\\uD83D', '\\uDE00',
  '\\uD83D\\uDE00', '\\p{L}', '\\P{Lu}', '\\/', '\\-', '\\.', '\\', '\\q', '\\t', '\\n', '\\v', '\\f',
  '\\r', '\\e', '\\_', '😀', 'ſ', '\u212a', 'ß', 'é', 'É', 'İ', 'ǅ', 'Σ', 'ς'];

function soupPattern(r) {
  let src = '';
  for (let n = r.between(1, 12); n > 0; n--) src += r.pick(TOKENS);
  return { source: src, sample: null };
}

// ---- values -------------------------------------------------------------------------------------------
const MAX_VALUE = 12;

function clip(s) {
  return Array.from(s).slice(0, MAX_VALUE).join('');
}

/** A string of the pattern's own characters (case-varied, with a stray one now and then). */
function fromPattern(r, source) {
  const chars = Array.from(source).filter((c) => c !== '\\');
  if (!chars.length) return randomString(r, 4);
  let s = '';
  for (let n = r.between(1, 8); n > 0; n--) s += r.chance(0.15) ? r.pick(ALPHABET) : recase(r, r.pick(chars));
  return s;
}

/** Noise around or inside a sample: a character inserted, removed or replaced, a prefix or a suffix. */
function noisy(r, s) {
  const chars = Array.from(s);
  const at = r.int(chars.length + 1);
  switch (r.int(4)) {
    case 0: chars.splice(at, 0, r.pick(ALPHABET)); break;
    case 1: chars.splice(at, 1); break;
    case 2: chars.splice(at, 1, r.pick(ALPHABET)); break;
    default: return r.chance(0.5) ? randomString(r, 3) + s : s + randomString(r, 3);
  }
  return chars.join('');
}

function values(r, pattern) {
  const out = [];
  if (pattern.sample) {
    const sample = pattern.sample();
    out.push(sample);
    if (r.chance(0.6)) out.push(noisy(r, sample));
  }
  out.push(fromPattern(r, pattern.source));
  if (r.chance(0.7)) out.push(randomString(r, 8));
  while (out.length < 2) out.push(fromPattern(r, pattern.source));
  return out.slice(0, 4).map(clip);
}

// ---- requests -----------------------------------------------------------------------------------------
function regexRule(pattern, negated) {
  return {
    OR: [{ AND: [{ OR_WHEN: [{ rule_type: 'generic_text_key_value', key: 'v',
      matching: { match_type: 'regexMatches', negated }, value: pattern }] }] }],
  };
}

/** One case a line, so that a kept request can be read and cut down by hand. */
function format(request) {
  const { cases, ...rest } = request;
  const head = JSON.stringify(rest).slice(1, -1);
  return `{${head},\n "cases": [\n${cases.map((c) => `  ${JSON.stringify(c)}`).join(',\n')}\n ]}\n`;
}

function rejectedByJavaScript(source) {
  try {
    new RegExp(source, 'i');
    return false;
  } catch (_) {
    return true;
  }
}

// Some patterns backtrack exponentially even on a short value (a grammar pattern of seed 5236 took
// V8 10 s on 10 characters), which would stall a run, and such an evaluation goes over convert-rs's
// work budget (2^24 steps), where the rule is false by design (docs/differences-from-js.md,
// "Regular expressions"). So every valid pattern is first tried on its values in a V8 context with
// a timeout, and a pattern that needs more than SLOW_MS is left out of the round (counted). The
// cut depends on the machine only for patterns near it: most patterns take microseconds.
const SLOW_MS = 20;
// The clock is read inside the context: the timeout's watchdog costs a few tenths of a millisecond
// per run, which is not the pattern's.
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sandbox = vm.createContext({ pattern: '', values: [], now });
const evaluation = new vm.Script(`{
  const start = now();
  const regex = new RegExp(pattern, 'i');
  for (const v of values) regex.test(v.toLowerCase());
  now() - start;
}`);

/** Milliseconds JavaScript needs for `pattern` on all of `values`, or Infinity past SLOW_MS. */
function javaScriptMillis(pattern, values) {
  sandbox.pattern = pattern;
  sandbox.values = values;
  try {
    return evaluation.runInContext(sandbox, { timeout: SLOW_MS });
  } catch (e) {
    if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return Infinity;
    throw e;
  }
}

// A disagreement where convert-rs answered false because the evaluation went over its work budget
// is the documented difference when JavaScript, too, needed at least BUDGET_MS for the pattern:
// it is printed and counted, but does not fail the round. Under BUDGET_MS it fails the round: V8
// found the answer quickly where convert-rs ran out of 2^24 steps.
const BUDGET_MS = 1;

// ---- running and comparing ----------------------------------------------------------------------------
/** Whether `convert -v batch` logs that the case went over the work budget (asked alone). */
function overBudget(c, file) {
  fs.writeFileSync(file, format({ state: 'isolated', captureTracking: false, cases: [c] }));
  const run = spawnSync(CONVERT, ['-v', 'batch', '--input', file], { encoding: 'utf8' });
  fs.unlinkSync(file);
  return run.status === 0 && /went over the work budget/.test(run.stderr);
}

const answer = (rec) => (rec && rec.result && rec.result.type === 'ruleMatch' ? rec.result.value : stable(rec));
const ms = (t) => (t < 0.1 ? t.toFixed(3) : t.toFixed(1));

const totals = { cases: 0, matched: 0, patterns: 0, rejected: 0, slow: 0, overBudget: 0 };
let failed = 0;
for (let round = 0; round < ROUNDS; round++) {
  const seed = FIRST_SEED + round;
  const r = rng(seed);
  const millis = new Map();
  const cases = [];
  for (let p = 0; p < PATTERNS; p++) {
    const pattern = r.chance(0.65) ? grammarPattern(r) : soupPattern(r);
    const vs = values(r, pattern);
    const negated = vs.map(() => r.chance(0.3));
    totals.patterns++;
    let t = 0;
    if (rejectedByJavaScript(pattern.source)) {
      totals.rejected++;
    } else {
      t = javaScriptMillis(pattern.source, vs);
      if (t === Infinity) {
        totals.slow++;
        continue;
      }
    }
    millis.set(pattern.source, Math.max(t, millis.get(pattern.source) || 0));
    vs.forEach((v, n) => {
      cases.push({ id: `${p}.${n}`, op: 'ruleMatch', data: { v }, ruleSet: regexRule(pattern.source, negated[n]) });
    });
  }
  totals.cases += cases.length;
  const request = { state: 'isolated', captureTracking: false, cases };
  const file = path.join(OUT, `regex-differential-${seed}.request.json`);
  fs.writeFileSync(file, format(request));
  let js;
  let ours;
  try {
    js = runTool(process.execPath, [path.join(__dirname, 'batch.js')], file, true);
    ours = runTool(CONVERT, ['batch'], file, true);
  } catch (e) {
    const stderr = e.stderr ? String(e.stderr).trim() : '';
    process.stdout.write(`seed ${seed}: a tool failed (request: ${file}): ${e.message}${stderr ? `\n  ${stderr}` : ''}\n`);
    failed++;
    continue;
  }
  totals.matched += js.filter((rec) => rec.result && rec.result.value === true).length;
  const printed = new Set();
  const say = (pattern, line) => {
    if (!printed.has(pattern)) process.stdout.write(`${line}\n`);
    printed.add(pattern);
  };
  let differing = 0;
  for (let i = 0; i < Math.max(js.length, ours.length, cases.length); i++) {
    if (stable(js[i]) === stable(ours[i])) continue;
    const c = cases[i];
    if (!c) {
      differing++;
      process.stdout.write(`seed ${seed}: record ${i} has no case: js ${stable(js[i])}, rust ${stable(ours[i])}\n`);
      continue;
    }
    const rule = c.ruleSet.OR[0].AND[0].OR_WHEN[0];
    const t = millis.get(rule.value);
    const line = `seed ${seed}: case ${c.id}: pattern ${JSON.stringify(rule.value)} value ${JSON.stringify(c.data.v)}`
      + ` negated ${rule.matching.negated}: js ${answer(js[i])}, rust ${answer(ours[i])}`;
    const budget = answer(ours[i]) === false
      && overBudget(c, path.join(OUT, `regex-differential-${seed}-${c.id}.request.json`));
    if (budget && t >= BUDGET_MS) {
      totals.overBudget++;
      say(`budget ${rule.value}`, `${line} (documented: over convert-rs's work budget; JavaScript took ${ms(t)} ms)`);
      continue;
    }
    differing++;
    say(rule.value, budget ? `${line} (convert-rs went over its work budget; JavaScript took ${ms(t)} ms)` : line);
  }
  if (differing) {
    process.stdout.write(`seed ${seed}: ${differing} of ${cases.length} cases differ (request: ${file})\n`);
    failed++;
  } else {
    fs.unlinkSync(file);
  }
}
process.stdout.write(`reference answers (Node.js ${process.version}): ${totals.cases} cases, ${totals.matched} true; `
  + `${totals.patterns} patterns, ${totals.rejected} rejected by JavaScript, ${totals.slow} left out (over ${SLOW_MS} ms `
  + `in JavaScript); ${totals.overBudget} cases over convert-rs's work budget (documented)\n`);
process.stdout.write(`${ROUNDS - failed} of ${ROUNDS} rounds agree (seeds ${FIRST_SEED}..${FIRST_SEED + ROUNDS - 1})\n`);
process.exit(failed ? 1 : 0);
