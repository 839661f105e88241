import { pino, type Logger } from 'pino';

/**
 * One root logger; modules take a child so every line says where it came from.
 * JSON goes to stderr so that stdout stays for what a command prints (tables, --json).
 */
const root: Logger = pino(
  { level: process.env.VIRT_COHORT_LOG_LEVEL ?? 'info', base: undefined },
  pino.destination(2),
);

export function logger(module: string): Logger {
  return root.child({ module });
}
