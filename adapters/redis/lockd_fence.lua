-- lockd fencing for Redis (EVAL / EVALSHA; Redis 6.2+). docs/fencing.md is the guide.
--
--   SCRIPT LOAD "$(cat lockd_fence.lua)"                       -> <sha>
--   EVALSHA <sha> 2 <fence key> <data key> SET <lock name> <fence> <cluster id> <value>
--   EVALSHA <sha> 2 <fence key> <data key> GET <lock name> <fence> <cluster id>
--   ... either form may end with: ADMIT <cluster id>[,<cluster id>...]   (pinning, below)
--
-- Runs the SET (or GET) of <data key> only if <fence> is not below the largest fence seen for the
-- lock, and records it as the largest; Redis runs a script atomically, so nothing can come between
-- the check and the command. The fence key (a hash: fence, cluster, lock) holds the largest fence,
-- the cluster that granted it and the lock's name (a fence key serves one lock only, and each lock
-- must use one fence key). Keep it with the data (same persistence, same replication) or a
-- restarted Redis forgets it. Never expire or delete it, and never let Redis evict it (use
-- maxmemory-policy noeviction, or volatile-* with no TTL on fence keys): a lost record admits
-- every stale holder at or above the next fence presented. In Redis Cluster both keys must hash to
-- one slot: give them one hash tag, e.g. "{wallet/alice}:fence" and "{wallet/alice}:balance".
-- lockd::fence::RedisArgs builds the argv (include/lockd/fence_adapters.h).
--
-- A fence is an unsigned 64-bit decimal; it is compared as a string (Lua numbers are doubles and
-- would round above 2^53). A fence of another cluster is admitted only when it is above the largest
-- seen: a restored cluster's raised token floor makes its fences so (docs/fencing.md). Unpinned
-- (no ADMIT), that also admits an unrelated cluster whose fences happen to be larger; with ADMIT,
-- a cluster not in the list is refused (LOCKD_ADMIT) whatever its fence. An admitted call with
-- ADMIT stores its list in the fence record (field admit), and from then on a cluster not in the
-- stored list is refused whatever the call passes, ADMIT or none; a call replaces the stored list
-- only if its cluster is in it. To admit a restored cluster: HSET <fence key> admit <old>,<new>.
--
-- Errors (nothing is written):
--   LOCKD_STALE    stale fence: below the largest seen for the lock (a holder paused past its lease)
--   LOCKD_CLUSTER  a fence of another cluster that is not above the largest seen
--   LOCKD_ADMIT    the cluster is not in the ADMIT list, or in the list stored in the record
--   LOCKD_BADARG   bad arguments: not 2 keys, an unknown operation, fence 0 / negative /
--                  non-numeric / above 2^64-1, a lock name not 1..512 bytes or with a NUL, a
--                  cluster id that is not 1..64 hex digits, a SET without exactly one value, a
--                  malformed ADMIT list,
--                  fence key = data key, a fence key that is no lockd record (not a hash, or a
--                  hash without fence, cluster and lock or with other fields) or records another
--                  lock, a data key that holds no string

local function fail(code, msg) return redis.error_reply(code .. ' lockd_fence: ' .. msg) end

-- -1, 0, 1 as a <, =, > b for canonical decimal strings (no leading zeros).
local function compare(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end

local function check(keys, argv)
  if #keys ~= 2 then return nil, fail('LOCKD_BADARG', 'needs 2 keys (fence key, data key), got ' .. #keys) end
  local op, name, fence, cluster = argv[1], argv[2], argv[3], argv[4]
  if op ~= 'SET' and op ~= 'GET' then
    return nil, fail('LOCKD_BADARG', "operation must be SET or GET, got '" .. tostring(op) .. "'")
  end
  local fixed = op == 'SET' and 5 or 4
  local admitted, admit_list = nil, nil
  if #argv == fixed + 2 and argv[fixed + 1] == 'ADMIT' then
    admitted = {}
    for id in string.gmatch(argv[fixed + 2] .. ',', '([^,]*),') do
      if not string.match(id, '^%x+$') or #id > 64 then
        return nil, fail('LOCKD_BADARG', "ADMIT list '" .. string.sub(argv[fixed + 2], 1, 80) ..
                         "' is not a comma-separated list of lockd cluster ids")
      end
      admitted[string.lower(id)] = true
    end
    local ids = {}
    for id in pairs(admitted) do ids[#ids + 1] = id end
    table.sort(ids)
    admit_list = table.concat(ids, ',')
  elseif #argv ~= fixed then
    return nil, fail('LOCKD_BADARG', op .. ' takes lock name, fence, cluster id' ..
                     (op == 'SET' and ', value' or '') .. ' [ADMIT ids]; got ' .. (#argv - 1) ..
                     ' arguments')
  end
  -- 512: lockd's default max_name_bytes (kMaxNameBytes in lockd/fence_adapters.h).
  if #name < 1 or #name > 512 then
    return nil, fail('LOCKD_BADARG', 'lock name must be 1..512 bytes, got ' .. #name)
  end
  if string.find(name, '%z') then
    return nil, fail('LOCKD_BADARG', 'lock name holds a NUL byte')
  end
  if not string.match(fence, '^%-?%d+$') then
    return nil, fail('LOCKD_BADARG', "fence '" .. string.sub(fence, 1, 80) .. "' is not a number")
  end
  local canonical = string.gsub(fence, '^0+', '')
  if string.sub(fence, 1, 1) == '-' or canonical == '' or
     compare(canonical, '18446744073709551615') > 0 then
    return nil, fail('LOCKD_BADARG', 'fence ' .. string.sub(fence, 1, 80) .. " on lock '" .. name ..
                     "' is not a lockd fence (an integer in 1..2^64-1)")
  end
  if not string.match(cluster, '^%x+$') or #cluster > 64 then
    return nil, fail('LOCKD_BADARG', "cluster id '" .. string.sub(cluster, 1, 80) ..
                     "' is not a lockd cluster id (1..64 hex digits)")
  end
  cluster = string.lower(cluster)
  if admitted and not admitted[cluster] then
    return nil, fail('LOCKD_ADMIT', 'cluster ' .. cluster .. " on lock '" .. name ..
                     "' is not admitted (ADMIT " .. string.sub(argv[fixed + 2], 1, 200) .. ')')
  end
  return {op = op, name = name, fence = canonical, cluster = cluster, admit = admit_list}
end

-- Redis does not undo a script's writes when a later command of it fails, so everything that could
-- fail is checked before the first write: the keys' types, and that the record is this lock's.
local function check_keys(keys)
  if keys[1] == keys[2] then
    return fail('LOCKD_BADARG', "the fence key and the data key are both '" ..
                string.sub(keys[1], 1, 200) .. "'")
  end
  local fence_type = redis.call('TYPE', keys[1]).ok
  if fence_type ~= 'hash' and fence_type ~= 'none' then
    return fail('LOCKD_BADARG', "fence key '" .. string.sub(keys[1], 1, 200) .. "' holds a " ..
                fence_type .. ', not a lockd fence record (a hash)')
  end
  -- A hash that is not a lockd record (an application's hash passed as the fence key by mistake)
  -- is refused rather than written into. Every record the script writes has fence, cluster and
  -- lock, and admit once a pinned call recorded.
  if fence_type == 'hash' then
    local fields = redis.call('HLEN', keys[1]) <= 4 and redis.call('HKEYS', keys[1]) or {'?'}
    local known = {fence = 0, cluster = 0, lock = 0, admit = 0}
    for _, field in ipairs(fields) do
      if not known[field] then
        return fail('LOCKD_BADARG', "fence key '" .. string.sub(keys[1], 1, 200) ..
                    "' is a hash with other fields than fence, cluster, lock and admit: " ..
                    'not a lockd fence record')
      end
      known[field] = 1
    end
    if known.fence + known.cluster + known.lock ~= 3 then
      return fail('LOCKD_BADARG', "fence key '" .. string.sub(keys[1], 1, 200) ..
                  "' is a hash without the fields fence, cluster and lock: not a lockd fence record")
    end
  end
  -- Only strings: a SET over a hash could erase another lock's fence record.
  local data_type = redis.call('TYPE', keys[2]).ok
  if data_type ~= 'string' and data_type ~= 'none' then
    return fail('LOCKD_BADARG', "data key '" .. string.sub(keys[2], 1, 200) .. "' holds a " ..
                data_type .. '; the script reads and writes strings')
  end
  return nil
end

local function run(keys, argv)
  local a, err = check(keys, argv)
  if not a then return err end
  err = check_keys(keys)
  if err then return err end
  local seen = redis.call('HMGET', keys[1], 'fence', 'cluster', 'lock', 'admit')
  local largest, largest_cluster, recorded_lock, pinned = seen[1], seen[2], seen[3], seen[4]
  -- A fence key shared by two locks would order their unrelated fences. (A second fence key for
  -- one lock, which would admit stale writes through it, cannot be seen from here: the docs ask
  -- for one fence key per lock, the builders' default.)
  if recorded_lock and recorded_lock ~= a.name then
    return fail('LOCKD_BADARG', "fence key '" .. string.sub(keys[1], 1, 200) ..
                "' records lock '" .. recorded_lock .. "', not '" .. a.name .. "'")
  end
  -- The pin a pinned call stored binds every later call, whatever that call's own ADMIT says (or
  -- whether it has one): a writer of a foreign cluster brings its own configuration.
  if pinned then
    local listed = false
    for id in string.gmatch(pinned .. ',', '([^,]*),') do listed = listed or id == a.cluster end
    if not listed then
      return fail('LOCKD_ADMIT', 'cluster ' .. a.cluster .. " on lock '" .. a.name ..
                  "' is not admitted (pinned in the fence record: " .. string.sub(pinned, 1, 200) ..
                  ')')
    end
  end
  if largest then
    local c = compare(a.fence, largest)
    if largest_cluster == a.cluster then
      if c < 0 then
        return fail('LOCKD_STALE', 'stale fence ' .. a.fence .. " on lock '" .. a.name ..
                    "': a holder with fence " .. largest .. ' came since')
      end
    elseif c <= 0 then
      return fail('LOCKD_CLUSTER', 'fence ' .. a.fence .. ' of cluster ' .. a.cluster ..
                  " on lock '" .. a.name .. "' is not above the largest fence " .. largest ..
                  ' (cluster ' .. tostring(largest_cluster) .. ')')
    end
  end
  if not largest or compare(a.fence, largest) > 0 or largest_cluster ~= a.cluster then
    redis.call('HSET', keys[1], 'fence', a.fence, 'cluster', a.cluster, 'lock', a.name)
  end
  -- An admitted pinned call stores its list (it is in the stored one, if any, checked above).
  if a.admit and a.admit ~= pinned then redis.call('HSET', keys[1], 'admit', a.admit) end
  if a.op == 'SET' then return redis.call('SET', keys[2], argv[5]) end
  return redis.call('GET', keys[2])
end

return run(KEYS, ARGV)
