import type { ChainableCommander } from 'ioredis';

/**
 * Sends a pipeline or MULTI and returns each command's reply, in order.
 * ioredis resolves exec() with an [error, reply] pair per command, so a
 * command that failed (a script's error, WRONGTYPE, OOM) would otherwise pass
 * as a reply: here the first such error is thrown. `what` names the batch when
 * Redis ran none of it (EXEC answered nil).
 */
export async function results(tx: ChainableCommander, what: string): Promise<unknown[]> {
  const out = await tx.exec();
  if (!out) throw new Error(`Redis discarded ${what} (EXEC answered nil)`);
  return out.map(([err, reply]) => {
    if (err) throw err;
    return reply;
  });
}
