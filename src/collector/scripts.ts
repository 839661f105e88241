import type { Redis, Result } from 'ioredis';

/**
 * The collector's Lua scripts, defined on a connection as ioredis commands
 * (defineScripts: EVALSHA, and the script itself when Redis lacks it), typed
 * below as ioredis documents. Each runs atomically in Redis: the exactly-once
 * guards live here.
 */
declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** APPLY. Keys and arguments as APPLY lists them; 1 applied now, 0 already applied, -1 stale ids (nothing written). */
    vcApply(...keysAndArgs: (string | number | Buffer)[]): Result<number, Context>;
    /** DICT: the dictionary's epoch and the Redis process's run_id. */
    vcDict(pairDict: string, pairNames: string, pairIds: string, epoch: string): Result<[epoch: string, run: string], Context>;
    /** NEW_IDS: the ids of `members` are first, first + 1, ... */
    vcNewIds(pairDict: string, pairNames: string, pairIds: string, epoch: string, segment: number, cap: number, ...members: string[]): Result<[epoch: string, run: string, first: number], Context>;
    /** INDEX_IDS: member, id, member, id...; -1 when the dictionary or the Redis process changed (nothing written). */
    vcIndexIds(pairDict: string, pairIds: string, epoch: string, run: string, ...memberIds: (string | number)[]): Result<number, Context>;
    /** SUM. Keys and arguments as SUM lists them; 1 summed, 0 not this caller's chunk. */
    vcSum(...keysAndArgs: (string | number)[]): Result<number, Context>;
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
 * Lua: adds `n` pairs, given as ARGV[a .. a+n-1] members, then their messages,
 * then their bytes, to the zsets KEYS[zm] and KEYS[zb], a thousand at a time:
 * ZMSCORE, add in Lua, one ZADD (a third of the time of a ZINCRBY per pair).
 * A member new to the zset (the usual case: a pair is measured by one host)
 * takes the count as sent, with no conversion.
 */
const ADD_TO_ZSETS = `
local function addTo(zm, zb, a, n)
  for s = 0, n - 1, 1000 do
    local e = math.min(s + 1000, n) - 1
    local ms = redis.call('ZMSCORE', zm, unpack(ARGV, a + s, a + e))
    local bs = redis.call('ZMSCORE', zb, unpack(ARGV, a + s, a + e))
    local tm, tb = {}, {}
    for i = s, e do
      local m, j, k = ARGV[a + i], 2 * (i - s), i - s + 1
      local cm, cb = ms[k], bs[k]
      tm[j + 1] = cm and tonumber(cm) + tonumber(ARGV[a + n + i]) or ARGV[a + n + i]
      tm[j + 2] = m
      tb[j + 1] = cb and tonumber(cb) + tonumber(ARGV[a + 2 * n + i]) or ARGV[a + 2 * n + i]
      tb[j + 2] = m
    end
    redis.call('ZADD', zm, unpack(tm))
    redis.call('ZADD', zb, unpack(tb))
  end
end
`;

/**
 * Applies a host's report exactly once. The SADD on the period's `reported`
 * set is the guard: a report re-sent (ioredis replays commands after a
 * reconnect; the agent re-sends its spool after an unanswered write) finds its
 * host already there and writes nothing. Behind the guard, in the same script:
 * the host's packed pairs (one SET), its meta, the period in vc:periods, and
 * either the pairs summed into the period's zsets (a small report) or a
 * `pending` field that Store.materialise works off (a large one).
 * Refused (-1) when the pair ids were taken from another dictionary or another
 * Redis process than the one that runs it (see idsOf): nothing is written.
 * KEYS: reported, hostPairs, meta, periods, pairDict, pending, msgs, bytes.
 * ARGV: host, period, epoch, run_id, blob, meta, n pairs inline (-1: none, the report is large), then n members, messages, bytes.
 */
const APPLY = `${ADD_TO_ZSETS + RUN_ID}
if redis.call('HGET', KEYS[5], 'epoch') ~= ARGV[3] or run_id() ~= ARGV[4] then return -1 end
-- A script is not undone when a call fails: under an ACL (virt-cohort acl), a host that may not write this
-- report must fail before the guard below marks it reported. (acl_check_cmd: Redis 7.0 and later.)
if redis.acl_check_cmd and not redis.acl_check_cmd('SET', KEYS[2], '') then
  return redis.error_reply("NOPERM this user may not write " .. KEYS[2] .. ": each agent writes only its own host's reports (virt-cohort acl)")
end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[2])
local n = tonumber(ARGV[7])
if n > 0 then
  addTo(KEYS[7], KEYS[8], 8, n)
elseif n < 0 then
  redis.call('HSET', KEYS[6], ARGV[2] .. ':' .. ARGV[1], 0)
end
return 1
`;

/**
 * Creates the pair dictionary when there is none (with the epoch given, and
 * without the names and index of one deleted by hand), gives the members the
 * next ids (a range reserved with HINCRBY), and appends their names to the
 * name segments (vc:pair:names, field id / NAME_SEGMENT: the names of those
 * ids joined by NUL, in id order: reservation and append are one script). No work
 * per member here: the member → id index (vc:pair:ids) is written later, off
 * the report's path (indexIds). A dictionary that already holds `cap` ids
 * (0: no cap) is retired first: its names move to vc:pair:names:EPOCH, its
 * index goes, and a new dictionary (epoch ARGV[1]) takes the members; a
 * caller holding ids of the old one sees the new epoch and asks again.
 * Returns epoch, run_id, first id.
 * KEYS: pairDict, pairNames, pairIds. ARGV: epoch for a new dictionary, segment size, cap, members...
 */
const NEW_IDS = `${OPEN_DICT}
local run = run_id()
local k = #ARGV - 3
local cap = tonumber(ARGV[3])
if cap > 0 and tonumber(redis.call('HGET', KEYS[1], 'next')) >= cap then
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[2] .. ':' .. epoch) end
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'retired:' .. epoch, redis.call('TIME')[1], 'epoch', ARGV[1], 'next', 0)
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
 * Sums one chunk of an applied report into the period's zsets, once: only when
 * the report's `pending` field says the pairs summed so far end where this
 * chunk starts; it then moves the field past the chunk, or removes it after
 * the last. A chunk replayed, one summed by another caller meanwhile, or a
 * report trimmed meanwhile (field gone) adds nothing.
 * KEYS: pending, msgs, bytes. ARGV: field, offset, last (1|0), n, then n members, messages, bytes.
 */
const SUM = `${ADD_TO_ZSETS}
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
local n = tonumber(ARGV[4])
addTo(KEYS[2], KEYS[3], 5, n)
if ARGV[3] == '1' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] + n) end
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
  redis.defineCommand('vcApply', { numberOfKeys: 8, lua: APPLY });
  redis.defineCommand('vcDict', { numberOfKeys: 3, lua: DICT });
  redis.defineCommand('vcNewIds', { numberOfKeys: 3, lua: NEW_IDS });
  redis.defineCommand('vcIndexIds', { numberOfKeys: 2, lua: INDEX_IDS });
  redis.defineCommand('vcSum', { numberOfKeys: 3, lua: SUM });
  redis.defineCommand('vcPutVm', { numberOfKeys: 3, lua: PUT_VM });
  redis.defineCommand('vcVmGone', { numberOfKeys: 1, lua: VM_GONE });
  redis.defineCommand('vcDropAddresses', { numberOfKeys: 1, lua: DROP_ADDRESSES });
  redis.defineCommand('vcEnvPut', { numberOfKeys: 2, lua: ENV_PUT });
  redis.defineCommand('vcForgetVm', { numberOfKeys: 3, lua: FORGET_VM });
}
