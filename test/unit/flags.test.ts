// Every setting has a flag (README: Configuration), except `tokens`, which stays out of command
// lines on purpose; and every flag names a setting, so a typo in a flag cannot be silently ignored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { configSchema } from '../../src/config/schema.js';
import { agentFlags, hubFlags, serveFlags } from '../../src/main/flags.js';

const NO_FLAG = new Set(['tokens', 'fleetToken', 'webhooks']);
/** Flags that are not settings: the config file itself, and agent's alias of --workers. */
const NOT_SETTINGS = new Set(['config', 'concurrency']);

test('every setting but tokens is a flag of serve, hub or agent; every flag is a setting', () => {
  const settings = Object.keys(configSchema.shape);
  assert.ok(settings.length > 50, `only ${settings.length} settings found`);
  const flags = new Set<string>();
  for (const make of [serveFlags, hubFlags, agentFlags]) for (const o of make(new Command('x')).options) flags.add(o.attributeName());
  const missing = settings.filter((k) => !NO_FLAG.has(k) && !flags.has(k));
  assert.deepEqual(missing, [], 'settings without a flag (add one in src/main/flags.ts or list it in the README as flagless)');
  const unknown = [...flags].filter((f) => !NOT_SETTINGS.has(f) && !settings.includes(f));
  assert.deepEqual(unknown, [], 'flags that name no setting');
  assert.ok(!flags.has('tokens'));
  assert.ok(!flags.has('fleetToken'), 'the fleet token stays out of command lines');
});
