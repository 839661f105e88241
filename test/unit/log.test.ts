import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/paths.js';
import { prettyLine } from '../../src/util/pretty.js';

const LOG = join(packageRoot, 'dist', 'src', 'util', 'log.js');
const run = promisify(execFile);

/** A process that logs one warning after configuring its logging as `setup` says. */
async function logs(setup: string, env: NodeJS.ProcessEnv = {}) {
  const script = `import { configureLogging, logger } from ${JSON.stringify(LOG)};
const log = logger('agent');
${setup}
log.debug('hidden unless debug');
log.warn({ period: '12:00:00', n: 3 }, 'waiting for Redis');
log.error({ err: new Error('boom') }, 'it failed');`;
  return run(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, VIRT_COHORT_LOG_LEVEL: undefined, ...env } });
}

test('commands log JSON to stderr; a daemon logs JSON to stdout for journald', async () => {
  const cmd = await logs('');
  assert.equal(cmd.stdout, '');
  const line = JSON.parse(cmd.stderr.split('\n')[0]!) as Record<string, unknown>;
  assert.equal(line.msg, 'waiting for Redis');
  assert.equal(line.module, 'agent');
  assert.equal(line.level, 40);

  const daemon = await logs("configureLogging({ to: 'stdout', level: 'debug' });");
  assert.equal(daemon.stderr, '');
  const lines = daemon.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { msg: string; err?: { message: string } });
  assert.deepEqual(
    lines.map((l) => l.msg),
    ['hidden unless debug', 'waiting for Redis', 'it failed'],
  );
  assert.equal(lines[2]!.err?.message, 'boom');
});

test('--pretty: one readable line per entry, the stack below', async () => {
  const out = await logs("configureLogging({ to: 'stdout', pretty: true });");
  const [first, second, stack] = out.stdout.split('\n');
  assert.match(first!, /^\d\d:\d\d:\d\d\.\d{3} WARN {2}agent: waiting for Redis period=12:00:00 n=3$/);
  assert.match(second!, /^\d\d:\d\d:\d\d\.\d{3} ERROR agent: it failed$/);
  assert.match(stack!, /^ {4}Error: boom$/);
  assert.equal(prettyLine('not json\n'), 'not json\n');
  assert.equal(prettyLine(JSON.stringify({ level: 30, time: 0, msg: 'hi', a: 'two words' }), true), `00:00:00.000 \x1b[32mINFO \x1b[0m hi \x1b[2ma\x1b[0m="two words"\n`);
});
