// What the random differentials (differential.js, regex-differential.js) share: their command-line
// options, the seeded generator that makes a seed reproduce its round, running a tool of the batch
// protocol on a request file, and the key-order-free form in which records are compared.
'use strict';

const { execFileSync } = require('child_process');

/** The value after `name` on the command line, or `fallback`. */
function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

/** A small seeded generator (mulberry32): the same seed gives the same draws. */
function rng(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  const between = (lo, hi) => lo + int(hi - lo + 1);
  const pick = (list) => list[int(list.length)];
  const chance = (p) => next() < p;
  return { next, int, between, pick, chance };
}

/**
 * The records `cmd args --input file` prints (a batch runner: `batch.js` or `convert batch`).
 * With `quiet`, what the tool writes to its standard error is dropped instead of shown.
 */
function runTool(cmd, args, file, quiet = false) {
  const options = { maxBuffer: 1 << 28 };
  if (quiet) options.stdio = ['ignore', 'pipe', 'pipe'];
  return JSON.parse(execFileSync(cmd, [...args, '--input', file], options));
}

/** `v` as JSON with every object's keys sorted, so that key order does not count. */
function stable(v) {
  return JSON.stringify(v, (_, x) => (x && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]])) : x));
}

module.exports = { option, rng, runTool, stable };
