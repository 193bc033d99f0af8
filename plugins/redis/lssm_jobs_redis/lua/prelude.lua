-- Shared by every script (prepended by scripts.py). ARGV[1] is the hash-tagged key prefix, e.g. "{jobs}:";
-- every key below carries its hash tag, so each script touches one cluster slot. KEYS[1] is the prefix's
-- queue set, passed only so that clients and clusters route the call to that slot.
local P = ARGV[1]
local QUEUES = P .. 'queues'
local SEQ = P .. 'seq'
local DEDUPE = P .. 'dedupe'
local DEAD = P .. 'dead'
local DEADCOUNT = P .. 'deadcount'
local WAKE = P .. 'wake'

local function jkey(id) return P .. 'j:' .. id end
local function qkey(queue, kind) return P .. 'q:' .. queue .. ':' .. kind end

-- Server time in milliseconds: leases and due times use one clock, whatever the clients' clocks say.
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function seconds(ms) return string.format('%.3f', ms / 1000) end

-- Epoch seconds (as text, from a client) to milliseconds.
local function to_ms(text) return math.floor(tonumber(text) * 1000) end

local LIVE = { scheduled = true, pending = true, active = true }

-- Ready-set member: a fixed-width sequence number first, so jobs of equal priority (equal score) leave in
-- the order they became ready; the job id follows from character 17 on.
local function ready_member(seq, id) return string.format('%016x', seq) .. id end
local function member_id(member) return string.sub(member, 17) end

-- Forget a dedupe key if it still points at this job (it may have been taken over by a newer job).
local function release_dedupe(key, id)
  if key and redis.call('HGET', DEDUPE, key) == id then redis.call('HDEL', DEDUPE, key) end
end

-- Tell consumers waiting on these queues (idle flag set by their empty lease) that work arrived.
local function wake_queues(queues, force)
  for queue, _ in pairs(queues) do
    local idle = qkey(queue, 'idle')
    if force[queue] or redis.call('EXISTS', idle) == 1 then
      redis.call('DEL', idle)
      redis.call('PUBLISH', WAKE, queue)
    end
  end
end

-- The ready-order counter, read at most once per script and written back once at the end (save_seq).
local seqbox = { value = nil, start = nil }
local function next_seq()
  if seqbox.value == nil then
    seqbox.value = tonumber(redis.call('GET', SEQ) or '0')
    seqbox.start = seqbox.value
  end
  seqbox.value = seqbox.value + 1
  return seqbox.value
end
local function save_seq()
  if seqbox.value ~= seqbox.start then redis.call('SET', SEQ, seqbox.value) end
end

-- Schedule job `id` (hash `jk`, priority `prio`) to be ready at client time `run_ms`: ready now when it is
-- not in the future by the client's clock, else delayed (converted to server time with `offset`). Returns
-- true when it became ready or the first due of its delayed set, so consumers waiting longer should re-check.
local function place(jk, id, queue, prio, run_ms, client_ms, offset, now_text)
  if run_ms <= client_ms then
    local member = ready_member(next_seq(), id)
    redis.call('HSET', jk, 's', 'pending', 'n', member, 'u', now_text)
    redis.call('ZADD', qkey(queue, 'ready'), -prio, member)
    return true
  end
  local sched = qkey(queue, 'sched')
  redis.call('HSET', jk, 's', 'scheduled', 'u', now_text)
  redis.call('ZADD', sched, run_ms + offset, id)
  local first = redis.call('ZRANGE', sched, 0, 0)
  return first[1] == id
end

-- Delete completed jobs of `queue` past their retention (older than `retention_ms`, or beyond the newest
-- `retention_max`), at most `budget` of them: bounded work per call, which keeps up because every call
-- that completes jobs prunes more than it adds.
local function prune_done(queue, now, retention_ms, retention_max, budget)
  local done = qkey(queue, 'done')
  local old = redis.call('ZRANGEBYSCORE', done, '-inf', now - retention_ms, 'LIMIT', 0, budget)
  if #old < budget and retention_max > 0 then
    local excess = redis.call('ZCARD', done) - #old - retention_max
    if excess > 0 then
      old = redis.call('ZRANGE', done, 0, #old + math.min(excess, budget - #old) - 1)
    end
  end
  for _, id in ipairs(old) do
    redis.call('DEL', jkey(id))
    redis.call('ZREM', done, id)
  end
end
