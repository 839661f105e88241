/**
 * pino's JSON as one line a person reads at a terminal:
 * `12:04:31.207 WARN  agent: waiting for Redis ... key=value`, the error's
 * stack below. Small on purpose: no pino-pretty dependency.
 */
const LEVELS: Record<number, [string, string]> = {
  10: ['TRACE', '90'],
  20: ['DEBUG', '36'],
  30: ['INFO ', '32'],
  40: ['WARN ', '33'],
  50: ['ERROR', '31'],
  60: ['FATAL', '35'],
};

export function prettyLine(json: string, colour = false): string {
  let e: Record<string, unknown>;
  try {
    e = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { level, time, module, msg, err, ...rest } = e;
  const [name, code] = LEVELS[Number(level)] ?? [String(level), '0'];
  const paint = (s: string, c: string) => (colour ? `\x1b[${c}m${s}\x1b[0m` : s);
  const when = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  const fields = Object.entries(rest).map(([k, v]) => `${paint(k, '2')}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`);
  let out = `${when} ${paint(name, code)} ${module ? `${module}: ` : ''}${msg ?? ''}${fields.length ? ` ${fields.join(' ')}` : ''}`;
  if (err && typeof err === 'object') {
    const x = err as { message?: string; stack?: string };
    out += x.stack ? `\n    ${x.stack.split('\n').join('\n    ')}` : ` err=${x.message ?? JSON.stringify(err)}`;
  } else if (err !== undefined) out += ` err=${JSON.stringify(err)}`;
  return `${out}\n`;
}
