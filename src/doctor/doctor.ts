import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { scrub } from '../config/redact.js';
import { withTimeout } from '../util/exec.js';
import {
  checkAgentSocket,
  checkBpf,
  checkBpffs,
  checkClsact,
  checkHook,
  checkHookLoaded,
  checkLibvirt,
  checkPins,
  checkRoot,
  checkSpool,
  checkTaps,
  type CheckResult,
  type DoctorContext,
  type Findings,
} from './checks.js';
import { checkRedis } from './redis.js';
import { checkAdvertised, checkReach, checkRoutes } from './routes.js';

export interface DoctorReport {
  host: string;
  at: string;
  ok: boolean;
  checks: CheckResult[];
}

const CHECK_TIMEOUT_MS = 30_000;

/** Every check in turn (one failing never stops the others); `first` are results found before (the configuration's). */
export async function runDoctor(c: DoctorContext, first: CheckResult[] = [], secrets: string[] = []): Promise<DoctorReport> {
  const f: Findings = {};
  const steps: [string, () => Promise<CheckResult | CheckResult[]>][] = [
    ['root', () => checkRoot(c)],
    ['bpf', () => checkBpf(c)],
    ['bpffs', () => checkBpffs(c)],
    ['pins', () => checkPins(c)],
    ['clsact', () => checkClsact(c)],
    ['libvirt', () => checkLibvirt(c, f)],
    ['taps', () => checkTaps(c, f)],
    ['hook', () => checkHook(c)],
    ['hook-loaded', () => checkHookLoaded(c)],
    ['agent', () => checkAgentSocket(c)],
    ['redis', () => checkRedis(c)],
    ['advertise', () => checkAdvertised(c)],
    ['routes', () => checkRoutes(c)],
    ['reach', () => checkReach(c)],
    ['spool', () => checkSpool(c)],
  ];
  const checks = [...first];
  for (const [id, step] of steps) {
    try {
      checks.push(...[await withTimeout(step(), CHECK_TIMEOUT_MS, id)].flat());
    } catch (err) {
      checks.push({ id, title: id, status: 'fail', detail: `the check itself failed: ${(err as Error).message}`, fix: 'report this with the output of virt-cohort doctor --json' });
    }
  }
  // No secret leaves through a message that quoted one.
  const all = [...secrets, ...passwordFileSecret(c)];
  const clean = checks.map((r) => ({ ...r, detail: scrub(r.detail, all), ...(r.fix ? { fix: scrub(r.fix, all) } : {}) }));
  return { host: hostname(), at: new Date().toISOString(), ok: !clean.some((r) => r.status === 'fail'), checks: clean };
}

function passwordFileSecret(c: DoctorContext): string[] {
  if (!c.redisAuth?.passwordFile) return [];
  try {
    const s = readFileSync(c.redisAuth.passwordFile, 'utf8').trim();
    return s.length >= 3 ? [s] : [];
  } catch {
    return [];
  }
}

const MARK: Record<CheckResult['status'], string> = { ok: '[ ok ]', warn: '[warn]', fail: '[FAIL]', skip: '[skip]' };

export function renderDoctor(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.title.length));
  const lines = [`virt-cohort doctor on ${r.host} at ${r.at}`];
  for (const c of r.checks) {
    lines.push(`${MARK[c.status]} ${c.title.padEnd(width)}  ${c.detail}`);
    if (c.fix) lines.push(`       ${' '.repeat(width)}  fix: ${c.fix}`);
  }
  const failed = r.checks.filter((c) => c.status === 'fail').length;
  const warned = r.checks.filter((c) => c.status === 'warn').length;
  lines.push(failed ? `${failed} check(s) failed${warned ? `, ${warned} warning(s)` : ''}: see the fix lines` : warned ? `all checks passed, ${warned} warning(s)` : 'all checks passed');
  return `${lines.join('\n')}\n`;
}
