#!/usr/bin/env node
// Times loading a config into the published @convertcom/js-sdk 4.4.3: `JSON.parse` of the text and
// `new ConvertSDK({data})` (which indexes the config), the same work `ProjectConfig::from_json`
// does. Usage: node load-time.js CONFIG.json [RUNS]. Prints one JSON object with the median and
// the quartiles in milliseconds. See docs/performance.md ("Engine").
'use strict';

const fs = require('fs');
const sdkPackage = require('@convertcom/js-sdk');

const ConvertSDK = sdkPackage.default;

const [file, runsArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node load-time.js CONFIG.json [RUNS]\n');
  process.exit(2);
}
const text = fs.readFileSync(file, 'utf8');
const runs = Number(runsArg) > 0 ? Number(runsArg) : 30;
const load = () => new ConvertSDK({
  data: JSON.parse(text),
  environment: 'production',
  events: { release_interval: 3600000 },
  logger: { logLevel: sdkPackage.LogLevel.SILENT },
});
for (let i = 0; i < 5; i++) load(); // warm-up (JIT)
const ms = [];
for (let i = 0; i < runs; i++) {
  const t0 = process.hrtime.bigint();
  load();
  ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
ms.sort((a, b) => a - b);
const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
process.stdout.write(`${JSON.stringify({ sdk: 'js4.4.3', bytes: text.length, runs, medianMs: q(0.5), q1Ms: q(0.25), q3Ms: q(0.75) })}\n`,
  () => process.exit(0));
