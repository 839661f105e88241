/**
 * An error the user can fix: its message says what is wrong and what to type.
 * The CLI prints it without a stack trace and exits with `exitCode`.
 */
export class UserError extends Error {
  override name = 'UserError';
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

/** A command we ran failed; carries what it printed so nothing is swallowed. */
export class CommandError extends Error {
  override name = 'CommandError';
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly code: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    const detail = (stderr || stdout).trim().split('\n').slice(-5).join('\n');
    const line = `${command} ${args.join(' ')}`;
    super(`${line.length > 300 ? `${line.slice(0, 300)}...` : line} failed (exit ${code}): ${detail}`);
  }
}
