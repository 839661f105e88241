import { pino, type Level, type Logger } from 'pino';
import { prettyLine } from './pretty.js';

/**
 * One root logger; modules take a child so every line says where it came from.
 * Commands log JSON to stderr so that stdout stays for what they print
 * (tables, --json); the daemons (agent, manager) call configureLogging to log
 * to stdout, which journald collects, or pretty lines for a person.
 */
type Sink = { write(s: string): unknown };
const sinks: Record<'stdout' | 'stderr', () => Sink> = {
  stdout: once(() => pino.destination({ dest: 1, sync: true })),
  stderr: once(() => pino.destination({ dest: 2, sync: true })),
};
let target: Sink = sinks.stderr();
let pretty: { colour: boolean } | undefined;

const dest = {
  write(line: string): void {
    target.write(pretty ? prettyLine(line, pretty.colour) : line);
  },
};

const root: Logger = pino({ level: process.env.VIRT_COHORT_LOG_LEVEL ?? 'info', base: undefined }, dest);
// Children keep the level they were made with; configureLogging sets them all.
const children: Logger[] = [];

export function logger(module: string): Logger {
  const child = root.child({ module });
  children.push(child);
  return child;
}

export interface LogOptions {
  /** A file (appended to) keeps JSON lines away from what a person reads on the terminal. */
  to: 'stdout' | 'stderr' | { file: string };
  /** One readable line per entry instead of JSON. */
  pretty?: boolean;
  level?: Level | 'silent';
}

export function configureLogging(o: LogOptions): void {
  if (typeof o.to === 'object') {
    target = pino.destination({ dest: o.to.file, sync: true, mkdir: true, append: true });
    pretty = o.pretty ? { colour: false } : undefined;
  } else {
    target = sinks[o.to]();
    const stream = o.to === 'stdout' ? process.stdout : process.stderr;
    pretty = o.pretty ? { colour: Boolean(stream.isTTY) && !process.env.NO_COLOR } : undefined;
  }
  if (o.level) {
    root.level = o.level;
    for (const c of children) c.level = o.level;
  }
}

function once<T>(make: () => T): () => T {
  let v: T | undefined;
  return () => (v ??= make());
}
