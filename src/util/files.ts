import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Replaces `path` so that a crash or power loss at any moment leaves the old
 * content or the new one, never a truncated file: written to a temporary file,
 * fsynced, renamed over, and the directory fsynced (the rename itself is
 * durable only then).
 */
export async function writeDurable(path: string, data: string, mode = 0o600): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
