import type { Redis, Result } from 'ioredis';

/**
 * The collector's Lua scripts, defined on a connection as ioredis commands
 * (defineScripts: EVALSHA, and the script itself when Redis lacks it), typed
 * below as ioredis documents. Each runs atomically in Redis: the exactly-once
 * guards live here.
 */
declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** APPLY. Keys and arguments as APPLY lists them; 1 applied now, 0 already applied. */
    vcApply(...keysAndArgs: (string | number | Buffer)[]): Result<number, Context>;
    /** SPAN: 1 recorded, -1 the report's ids are not the current dictionary's or this Redis process's (rewrite its blob). */
    vcSpan(periods: string, pairDict: string, epoch: string, run: string, period: number): Result<number, Context>;
    /** REWRITE: 1 the host's blob replaced, 0 the host has no report for the period. */
    vcRewrite(reported: string, hostPairs: string, host: string, blob: Buffer): Result<number, Context>;
    /** DICT: the dictionary's epoch and the Redis process's run_id. */
    vcDict(pairDict: string, pairNames: string, pairIds: string, epoch: string): Result<[epoch: string, run: string], Context>;
    /** NEW_IDS: the ids of `members` are first, first + 1, ... */
    vcNewIds(pairDict: string, pairNames: string, pairIds: string, epoch: string, segment: number, cap: number, ...members: string[]): Result<[epoch: string, run: string, first: number], Context>;
    /** INDEX_IDS: member, id, member, id...; -1 when the dictionary or the Redis process changed (nothing written). */
    vcIndexIds(pairDict: string, pairIds: string, epoch: string, run: string, ...memberIds: (string | number)[]): Result<number, Context>;
    /** SUM. Keys and arguments as SUM lists them; 1 written, 0 not this caller's chunk (or the period keeps no zsets). */
    vcSum(...keysAndArgs: (string | number)[]): Result<number, Context>;
    /** PRUNE: 1 the current dictionary was retired (a new one begun), 0 it is kept. */
    vcPrune(pairDict: string, pairNames: string, pairIds: string, epoch: string, oldestKept: number): Result<number, Context>;
    /** PUT_VM: 1. */
    vcPutVm(vms: string, vm: string, addr: string, name: string, host: string, state: string, now: number, fields: number, ...fieldsThenAddresses: (string | number)[]): Result<number, Context>;
    /** VM_GONE: 1 marked stopped, 0 the directory places it elsewhere. */
    vcVmGone(vm: string, host: string, now: number): Result<number, Context>;
    /** DROP_ADDRESSES: 0. */
    vcDropAddresses(addr: string, vm: string, ...addresses: string[]): Result<number, Context>;
    /** ENV_PUT: [1, the new version] written, or [0, the version in force] when it is not `expected` (nothing written). */
    vcEnvPut(version: string, versions: string, expected: number, record: string): Result<[written: number, version: number], Context>;
    /** FORGET_VM: 1 forgotten, 0 kept (running again, or stopped since the cutoff). */
    vcForgetVm(vms: string, vm: string, addr: string, name: string, cutoff: number): Result<number, Context>;
  }
}

/** The Redis process's run_id: ids cached by a Store are valid only in the process that handed them out. */
const RUN_ID = `
local function run_id() return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') end
`;

/**
 * Opens the pair dictionary (KEYS[1]), creating it with epoch ARGV[1] and
 * emptying its names and index (KEYS[2], KEYS[3]) when there is none; leaves
 * `epoch` set. Starts NEW_IDS and DICT.
 */
const OPEN_DICT = `${RUN_ID}
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'next', 0)
end
`;

/**
 * Lua: retires the current pair dictionary KEYS[1] (epoch `epoch`) and begins
 * a new one, `new`, with no ids: the old names move to vc:{vc}:pair:names:EPOCH
 * (KEYS[2] .. ':' .. epoch, the same slot), the index KEYS[3] goes (UNLINK:
 * freed off the main thread), and `retired:EPOCH` records the first period
 * that cannot hold a report written with it: one after `top`, the newest
 * period SPAN recorded for it (a report written with it later moves the mark
 * on, in SPAN). A dictionary without `top`
 * (written before `top` was kept) falls back on Redis's clock, as before.
 * Store.trim deletes a retired dictionary once the oldest period kept is at
 * or after that mark.
 */
const RETIRE = `
local function retire(epoch, new)
  local top = redis.call('HGET', KEYS[1], 'top')
  local at = top and tonumber(top) + 1 or tonumber(redis.call('TIME')[1])
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[2] .. ':' .. epoch) end
  redis.call('UNLINK', KEYS[3])
  redis.call('HDEL', KEYS[1], 'from', 'top')
  redis.call('HSET', KEYS[1], 'retired:' .. epoch, at, 'epoch', new, 'next', 0)
end
`;

/**
 * Lua: writes `n` pairs into one host's zsets KEYS[zm] and KEYS[zb], given
 * as ARGV[a ..] score, member pairs for the messages, then as many for the
 * bytes, a thousand pairs a ZADD (unpack's limit). Plain ZADD, no sum: the
 * zsets are the host's own for the period, the report is applied once and
 * each chunk of a large one once, and Store's `zsetColumns` merged any
 * member named twice in the report.
 */
const ADD_TO_ZSETS = `
local function addTo(zm, zb, a, n)
  for s = a, a + 2 * n - 1, 2000 do redis.call('ZADD', zm, unpack(ARGV, s, math.min(s + 1999, a + 2 * n - 1))) end
  for s = a + 2 * n, a + 4 * n - 1, 2000 do redis.call('ZADD', zb, unpack(ARGV, s, math.min(s + 1999, a + 4 * n - 1))) end
end
`;

/**
 * Applies a host's report exactly once. The SADD on the period's `reported`
 * set is the guard: a report re-sent (ioredis replays commands after a
 * reconnect; the agent re-sends its spool after an unanswered write) finds its
 * host already there and writes nothing. Behind the guard, in the same script:
 * the host's packed pairs (one SET), its meta, and, unless the caller said the
 * period keeps no zsets (it is not among the newest `zsetPeriods`) or
 * Store.trim deleted them (`zsetsGone`), either the pairs written into the
 * host's zsets for the period (a small report) or a `pending` field that
 * Store.materialise works off (a large one).
 * Every key is the period's (one hash tag, one slot in a Redis Cluster): what
 * spans periods, the list of periods and the pair dictionary's span, is
 * SPAN's, run after it by Store.apply.
 * KEYS: reported, hostPairs, meta, pending, hostMsgs, hostBytes, zsetsGone.
 * ARGV: host, blob, meta, n pairs inline (-1: none, the report is large; 0: no zsets), then n (messages, member),
 * then n (bytes, member).
 */
const APPLY = `${ADD_TO_ZSETS}
-- A script is not undone when a call fails: under an ACL (virt-cohort acl), a host that may not write this
-- report must fail before the guard below marks it reported. (acl_check_cmd: Redis 7.0 and later.)
if redis.acl_check_cmd and not redis.acl_check_cmd('SET', KEYS[2], '') then
  return redis.error_reply("NOPERM this user may not write " .. KEYS[2] .. ": each agent writes only its own host's reports (virt-cohort acl)")
end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
local n = tonumber(ARGV[4])
if n ~= 0 and redis.call('EXISTS', KEYS[7]) == 0 then
  if n > 0 then
    addTo(KEYS[5], KEYS[6], 5, n)
  else
    redis.call('HSET', KEYS[4], ARGV[1], 0)
  end
end
return 1
`;

/**
 * After APPLY (and again for a report APPLY found applied: a writer may have
 * died between the two; every step here can be repeated): lists the period in
 * vc:{vc}:periods and extends the current dictionary's span of periods (`from`,
 * the first, and `top`, the newest), which PRUNE retires it by; all in the
 * `{vc}` slot. -1 when the report's ids are not the current dictionary's, or
 * come from another Redis process than this one (a restart, a failover:
 * recent ids may be lost and given to other members since): Store.apply then
 * writes the report's blob again with ids read again (REWRITE) and calls SPAN
 * again. A dictionary retired since the writer read its ids also has its mark
 * (`retired:EPOCH`, the first period that cannot hold a report written with
 * it) moved past the period, so that its names stay while a blob may still
 * name it (a writer that dies before its REWRITE).
 * Before Redis Cluster this check ran inside APPLY, which then wrote nothing;
 * in a cluster the dictionary and the period live on different shards, and no
 * one script can see both.
 * KEYS: periods, pairDict. ARGV: epoch, run_id, period.
 */
const SPAN = `${RUN_ID}
local p = tonumber(ARGV[3])
local d = redis.call('HMGET', KEYS[2], 'epoch', 'retired:' .. ARGV[1], 'from', 'top')
if d[2] and p + 1 > tonumber(d[2]) then redis.call('HSET', KEYS[2], 'retired:' .. ARGV[1], p + 1) end
if d[1] ~= ARGV[1] or run_id() ~= ARGV[2] then return -1 end
redis.call('ZADD', KEYS[1], p, p)
if not d[3] then redis.call('HSET', KEYS[2], 'from', p) end
if not d[4] or p > tonumber(d[4]) then redis.call('HSET', KEYS[2], 'top', p) end
return 1
`;

/**
 * Replaces a host's applied report's blob (its ids read again after SPAN
 * refused them): the pairs and counts are the same, only the ids change.
 * KEYS: reported, hostPairs. ARGV: host, blob.
 */
const REWRITE = `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
`;

/**
 * Creates the pair dictionary when there is none (with the epoch given, and
 * without the names and index of one deleted by hand), gives the members the
 * next ids (a range reserved with HINCRBY), and appends their names to the
 * name segments (vc:{vc}:pair:names, field id / NAME_SEGMENT: the names of those
 * ids joined by NUL, in id order: reservation and append are one script). No work
 * per member here: the member → id index (vc:{vc}:pair:ids) is written later, off
 * the report's path (indexIds). A dictionary that already holds `cap` ids
 * (0: no cap) is retired first (RETIRE): its names move to vc:{vc}:pair:names:EPOCH, its
 * index goes, and a new dictionary (epoch ARGV[1]) takes the members; a
 * caller holding ids of the old one sees the new epoch and asks again.
 * Returns epoch, run_id, first id.
 * KEYS: pairDict, pairNames, pairIds. ARGV: epoch for a new dictionary, segment size, cap, members...
 */
const NEW_IDS = `${OPEN_DICT + RETIRE}
local run = run_id()
local k = #ARGV - 3
local cap = tonumber(ARGV[3])
if cap > 0 and tonumber(redis.call('HGET', KEYS[1], 'next')) >= cap then
  retire(epoch, ARGV[1])
  epoch = ARGV[1]
end
local first = redis.call('HINCRBY', KEYS[1], 'next', k) - k
local S = tonumber(ARGV[2])
local id = first
while id < first + k do
  local seg = math.floor(id / S)
  local last = math.min(first + k, (seg + 1) * S) - 1
  local part = table.concat(ARGV, '\\0', 4 + id - first, 4 + last - first)
  local cur = redis.call('HGET', KEYS[2], seg)
  if cur then part = cur .. '\\0' .. part end
  redis.call('HSET', KEYS[2], seg, part)
  id = last + 1
end
return {epoch, run, first}
`;

/** The current dictionary's epoch and run_id (creating the dictionary if there is none), for a lookup in the same MULTI. */
const DICT = `${OPEN_DICT}
return {epoch, run_id()}
`;

/**
 * Writes member → id into the index, when the dictionary and Redis process
 * are still those the ids came from (else -1: they are not written).
 * KEYS: pairDict, pairIds. ARGV: epoch, run_id, then member, id, member, id...
 */
const INDEX_IDS = `${RUN_ID}
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] or run_id() ~= ARGV[2] then return -1 end
for s = 3, #ARGV, 4000 do redis.call('HSET', KEYS[2], unpack(ARGV, s, math.min(s + 3999, #ARGV))) end
return 1
`;

/**
 * Writes one chunk of an applied report into the host's zsets, once: only when
 * the report's `pending` field says the pairs written so far end where this
 * chunk starts; it then moves the field past the chunk, or removes it after
 * the last. A chunk replayed, one written by another caller meanwhile, or a
 * report trimmed meanwhile (field gone) adds nothing; nor does one of a period
 * whose zsets Store.trim deleted (`zsetsGone`): its field goes.
 * KEYS: pending, hostMsgs, hostBytes, zsetsGone (one period's). ARGV: host, offset, last (1|0), n, then n
 * (messages, member), then n (bytes, member).
 */
const SUM = `${ADD_TO_ZSETS}
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local n = tonumber(ARGV[4])
addTo(KEYS[2], KEYS[3], 5, n)
if ARGV[3] == '1' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] + n) end
return 1
`;

/**
 * Prunes the pair dictionary by periods: when the current one (KEYS[1]) has
 * served reports since a period older than the oldest period kept
 * (ARGV[2]), it is retired (RETIRE) and a new one, epoch ARGV[1], begins.
 *
 * Why whole dictionaries rather than pair by pair: a pair's id is written
 * into every packed report that uses it, and a query names it only through
 * the dictionary the report names (its epoch). Deleting single members would
 * need each one's last period (a write per pair per period, more memory than
 * the member itself) and a way to stop a Store writing an id that a prune
 * removed between its lookup and its report. A dictionary retired whole needs
 * neither: a report written with ids of a dictionary retired meanwhile has
 * its blob written again with ids of the current one (SPAN -1, REWRITE),
 * and the retired one's mark moves past its period meanwhile; every report is
 * named by a dictionary kept until no period kept can hold one
 * (`retired:EPOCH`, one after its `top`). The pairs still in use re-enter
 * the new dictionary with the next report that names them; those not seen
 * since go with the retired one. So a pair unseen for one retention leaves
 * the current dictionary and its index at the next prune, and leaves Redis
 * with the retired names one retention later: at most two dictionaries exist
 * (the current one, whole, and the retired one's names).
 *
 * Ids: never reused within a dictionary (`next` only grows); a new one counts
 * from 0 again, but every packed report carries its epoch (8 random bytes)
 * and is read only against that epoch, so an (epoch, id) never names two
 * pairs.
 * KEYS: pairDict, pairNames, pairIds. ARGV: epoch of the new dictionary, oldest period kept.
 */
const PRUNE = `${RETIRE}
local d = redis.call('HMGET', KEYS[1], 'epoch', 'from')
if not d[1] or not d[2] or tonumber(d[2]) >= tonumber(ARGV[2]) then return 0 end
retire(d[1], ARGV[1])
return 1
`;

/** Marks a VM stopped only if the directory still places it on this host (a migration may have moved it already). */
const VM_GONE = `
if redis.call('HGET', KEYS[1], 'host') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'stopped', 'since', ARGV[2])
return 1
`;

/**
 * Writes a VM's record into the directory and its addresses into the address
 * map, setting `since` when its host or state changed: the read of the old host
 * and state and the write are one step, so a racing writer (the VM's old host
 * marking it gone, its new host adding it) cannot slip between them.
 * KEYS: vms, vm, addr. ARGV: name, host, state, now, n, then n fields and values, then addresses.
 */
const PUT_VM = `
local cur = redis.call('HMGET', KEYS[2], 'host', 'state')
redis.call('SADD', KEYS[1], ARGV[1])
local n = tonumber(ARGV[5])
if n > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, 6, 5 + n)) end
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] then redis.call('HSET', KEYS[2], 'since', ARGV[4]) end
for i = 6 + n, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[1]) end
return 1
`;

/** Removes addresses from the address map (KEYS[1]) where they still point at the VM ARGV[1] (another VM may hold them now). */
const DROP_ADDRESSES = `
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
`;

/**
 * Forgets a VM stopped since before ARGV[2] (ms): its record, its place in the
 * directory and the addresses still pointing at it. Nothing when it runs again
 * or stopped later (checked in the same step as the delete).
 * KEYS: vms, vm, addr. ARGV: name, cutoff. Returns 1 when forgotten.
 */
const FORGET_VM = `
local cur = redis.call('HMGET', KEYS[2], 'state', 'since', 'addresses')
if cur[1] ~= 'stopped' or tonumber(cur[2] or '0') >= tonumber(ARGV[2]) then return 0 end
for a in string.gmatch(cur[3] or '', '[^,]+') do
  if redis.call('HGET', KEYS[3], a) == ARGV[1] then redis.call('HDEL', KEYS[3], a) end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[1])
return 1
`;

/**
 * The environment's compare-and-set (Registry.putEnvironment): KEYS[1] the version in force, KEYS[2]
 * every version's record. Writes ARGV[2], the record of version ARGV[1] + 1, only if the version in
 * force is still ARGV[1]: two writers that read the same version cannot both write the next one.
 */
const ENV_PUT = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur ~= tonumber(ARGV[1]) then return {0, cur} end
local v = cur + 1
redis.call('HSET', KEYS[2], v, ARGV[2])
redis.call('SET', KEYS[1], v)
return {1, v}
`;

/** Defines the scripts above as commands of `redis` (and of its pipelines and transactions). */
export function defineScripts(redis: Redis): void {
  redis.defineCommand('vcApply', { numberOfKeys: 7, lua: APPLY });
  redis.defineCommand('vcSpan', { numberOfKeys: 2, lua: SPAN });
  redis.defineCommand('vcRewrite', { numberOfKeys: 2, lua: REWRITE });
  redis.defineCommand('vcDict', { numberOfKeys: 3, lua: DICT });
  redis.defineCommand('vcNewIds', { numberOfKeys: 3, lua: NEW_IDS });
  redis.defineCommand('vcIndexIds', { numberOfKeys: 2, lua: INDEX_IDS });
  redis.defineCommand('vcSum', { numberOfKeys: 4, lua: SUM });
  redis.defineCommand('vcPrune', { numberOfKeys: 3, lua: PRUNE });
  redis.defineCommand('vcPutVm', { numberOfKeys: 3, lua: PUT_VM });
  redis.defineCommand('vcVmGone', { numberOfKeys: 1, lua: VM_GONE });
  redis.defineCommand('vcDropAddresses', { numberOfKeys: 1, lua: DROP_ADDRESSES });
  redis.defineCommand('vcEnvPut', { numberOfKeys: 2, lua: ENV_PUT });
  redis.defineCommand('vcForgetVm', { numberOfKeys: 3, lua: FORGET_VM });
}
