-- Shared by every script (prepended by scripts.py). ARGV[1] is the hash-tagged key prefix, e.g. "{jobs}:";
-- every key below carries its hash tag, so each script touches one cluster slot. KEYS[1] is the prefix's
-- queue set, passed only so that clients and clusters route the call to that slot.
local P = ARGV[1]
local QUEUES = P .. 'queues'
local SEQ = P .. 'seq'
local DEDUPE = P .. 'dedupe'
local DEAD = P .. 'dead'
local DEADCOUNT = P .. 'deadcount'
local ANY_IDLERS = P .. 'idlers'

-- @ jkey
-- A job is a small hash (kept small so Redis stores it compactly as a listpack) plus its body:
--   j:<id>  t type, q queue, p priority, r run_at, c created_at, u updated_at (epoch seconds as text),
--           s status, a attempts, k lease token, n ready sequence number (see take_ready), d dedupe key,
--           e last error, x dead-letter reason, y traceback, f failed_at. Fields at their usual value are
--           left out (every field costs Redis time at each push): no p means priority 0, no r means run_at
--           = created_at, no u means updated_at = created_at, no a or k means 0 attempts, token 0.
--   b:<id>  the serialized envelope, verbatim
local function jkey(id) return P .. 'j:' .. id end
-- @ bkey
local function bkey(id) return P .. 'b:' .. id end
-- @ qkey
local function qkey(queue, kind) return P .. 'q:' .. queue .. ':' .. kind end
-- @ handoff_key
local function handoff_key(consumer) return P .. 'h:' .. consumer end

-- @ server_ms
-- Server time in milliseconds: leases and due times use one clock, whatever the clients' clocks say.
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- @ seconds
local function seconds(ms) return string.format('%.3f', ms / 1000) end

-- @ clock
-- The server clock, read once per call and only when needed.
local clock = nil
-- @ now_ms
local function now_ms()
  if clock == nil then clock = server_ms() end
  return clock
end
-- @ now_text
local function now_text() return seconds(now_ms()) end

-- @ to_ms
-- Epoch seconds (as text, from a client) to milliseconds.
local function to_ms(text) return math.floor(tonumber(text) * 1000) end

-- @ LIVE
local LIVE = { scheduled = true, pending = true, active = true }

-- @ ready_member
-- Ready-set member: the sequence number in fixed-width hex first, so jobs of equal priority (equal score)
-- leave in the order they became ready; the job id follows from character 17 on.
local function ready_member(seq, id) return string.format('%016x', seq) .. id end
-- @ member_id
local function member_id(member) return string.sub(member, 17) end

-- @ delivery
-- One leased job as handed to a client: "<attempt> <token> <id length> <queue length>\n<id><queue><body>".
local function delivery(attempt, token, id, queue, body)
  return attempt .. ' ' .. token .. ' ' .. #id .. ' ' .. #queue .. '\n' .. id .. queue .. body
end

-- @ call_many
-- Run `command key ...values` in calls of at most 1000 values (Lua's unpack has a stack limit): one call
-- for a batch of jobs instead of one per job.
local function call_many(command, key, values)
  for start = 1, #values, 1000 do
    redis.call(command, key, unpack(values, start, math.min(start + 999, #values)))
  end
end

-- @ release_dedupe
-- Forget a dedupe key if it still points at this job (it may have been taken over by a newer job).
local function release_dedupe(key, id)
  if key and redis.call('HGET', DEDUPE, key) == id then redis.call('HDEL', DEDUPE, key) end
end

-- @ seqbox
-- The ready-order counter, read at most once per script and written back once at its very end (save_seq,
-- after any hand-over, which may draw numbers too).
local seqbox = { value = nil, start = nil }
-- @ next_seq
local function next_seq()
  if seqbox.value == nil then
    seqbox.value = tonumber(redis.call('GET', SEQ) or '0')
    seqbox.start = seqbox.value
  end
  seqbox.value = seqbox.value + 1
  return seqbox.value
end
-- @ save_seq
local function save_seq()
  if seqbox.value ~= seqbox.start then redis.call('SET', SEQ, seqbox.value) end
end

-- @ make_ready
-- Make job `id` ready in `queue` with priority `prio`, at the end of its priority's line.
local function make_ready(jk, id, queue, prio)
  if prio == 0 then
    redis.call('HSET', jk, 's', 'pending', 'u', now_text())
    redis.call('HDEL', jk, 'n') -- a new place in line: its number is drawn when it leaves the line
    redis.call('RPUSH', qkey(queue, 'line'), id)
  else
    local seq = next_seq()
    redis.call('HSET', jk, 's', 'pending', 'n', seq, 'u', now_text())
    redis.call('ZADD', qkey(queue, 'ready'), -prio, ready_member(seq, id))
  end
end

-- @ take_ready peek_ready
-- Ready jobs live in two places: the line, a list of the ids of priority-0 jobs in the order they became
-- ready (the common case: a list costs Redis less time and memory than a sorted set), and the ready set
-- (score -priority, member: sequence number and id) for jobs with another priority and for jobs put back
-- in their old place (an expired lease, a release). Jobs in the line have no sequence number yet: each
-- draws one when it leaves the line (lease or hand-over), so numbers follow the line's order, and a job
-- put back keeps its number. A job leaves its queue's order only from the front, so every member of score
-- 0 in the ready set came before every job in the line: the order is the ready set's members of score
-- <= 0, then the line, then the ready set's members of score > 0 (negative priorities).
-- take_ready removes and returns the ids of up to `limit` of them, best first; peek_ready returns up to
-- `limit` of them as {score, id}, best first, removing nothing.
local function take_ready(queue, limit)
  local ready = qkey(queue, 'ready')
  local taken = {}
  local sorted = redis.call('EXISTS', ready) == 1
  if sorted then
    local first = redis.call('ZCOUNT', ready, '-inf', 0)
    if first > 0 then
      local popped = redis.call('ZPOPMIN', ready, math.min(first, limit))
      for i = 1, #popped, 2 do taken[#taken + 1] = member_id(popped[i]) end
    end
  end
  if #taken < limit then
    local popped = redis.call('LPOP', qkey(queue, 'line'), limit - #taken)
    if popped then
      for i = 1, #popped do taken[#taken + 1] = popped[i] end
    end
  end
  if sorted and #taken < limit then
    local popped = redis.call('ZPOPMIN', ready, limit - #taken)
    for i = 1, #popped, 2 do taken[#taken + 1] = member_id(popped[i]) end
  end
  return taken
end
local function peek_ready(queue, limit)
  local ready = qkey(queue, 'ready')
  local head = {}
  local sorted = redis.call('EXISTS', ready) == 1
  if sorted then
    local first = redis.call('ZRANGEBYSCORE', ready, '-inf', 0, 'WITHSCORES', 'LIMIT', 0, limit)
    for i = 1, #first, 2 do head[#head + 1] = { tonumber(first[i + 1]), member_id(first[i]) } end
  end
  if #head < limit then
    for _, id in ipairs(redis.call('LRANGE', qkey(queue, 'line'), 0, limit - #head - 1)) do
      head[#head + 1] = { 0, id }
    end
  end
  if sorted and #head < limit then
    local rest = redis.call('ZRANGEBYSCORE', ready, '(0', '+inf', 'WITHSCORES', 'LIMIT', 0, limit - #head)
    for i = 1, #rest, 2 do head[#head + 1] = { tonumber(rest[i + 1]), member_id(rest[i]) } end
  end
  return head
end

-- @ has_ready
local function has_ready(queue) return redis.call('EXISTS', qkey(queue, 'ready'), qkey(queue, 'line')) > 0 end

-- @ hand_over
-- Idle consumers block on their own hand-off list (BLPOP) after registering in an idlers set (score: until
-- when, member: 16-character consumer id followed by its lease ms). Giving them ready jobs here, leased
-- in the same atomic step, saves them a round trip: the job travels in the reply to their BLPOP.
local function hand_over(queue, id, idler)
  local consumer = string.sub(idler, 1, 16)
  local lease_ms = tonumber(string.sub(idler, 17))
  local jk = jkey(id)
  local body = redis.call('GET', bkey(id))
  if not body then return end -- purged meanwhile
  local job = redis.call('HMGET', jk, 'a', 'k', 'n')
  local attempt = tonumber(job[1] or 0) + 1
  local token = tonumber(job[2] or 0) + 1
  if job[3] then
    redis.call('HSET', jk, 's', 'active', 'a', attempt, 'k', token, 'u', now_text())
  else -- it left the line: its number now
    redis.call('HSET', jk, 's', 'active', 'a', attempt, 'k', token, 'u', now_text(), 'n', next_seq())
  end
  redis.call('ZADD', qkey(queue, 'active'), now_ms() + lease_ms, id)
  local list = handoff_key(consumer)
  redis.call('RPUSH', list, delivery(attempt, token, id, queue, body))
  redis.call('PEXPIRE', list, lease_ms + 60000)
end

-- @ offer
-- Give ready jobs of `queue` to its idle consumers (those of this queue, then those of every queue),
-- one job each, best first.
local function offer(queue)
  local mine = qkey(queue, 'idlers')
  if redis.call('EXISTS', mine, ANY_IDLERS) == 0 then return end -- the usual case: every consumer is busy
  for _, idlers in ipairs({ mine, ANY_IDLERS }) do
    if redis.call('EXISTS', idlers) == 1 then
      redis.call('ZREMRANGEBYSCORE', idlers, '-inf', now_ms() - 1)
      while true do
        local idler = redis.call('ZPOPMIN', idlers)
        if #idler == 0 then break end
        local best = take_ready(queue, 1)
        if #best == 0 then
          redis.call('ZADD', idlers, idler[2], idler[1])
          return
        end
        hand_over(queue, best[1], idler[1])
      end
    end
  end
end

-- @ wake_idlers
-- Wake the idle consumers of `queue` without giving them a job (a delayed job now comes due sooner than
-- they planned to look again): an empty entry in their hand-off lists.
local function wake_idlers(queue)
  for _, idlers in ipairs({ qkey(queue, 'idlers'), ANY_IDLERS }) do
    if redis.call('EXISTS', idlers) == 1 then
      for _, idler in ipairs(redis.call('ZRANGEBYSCORE', idlers, now_ms(), '+inf')) do
        local list = handoff_key(string.sub(idler, 1, 16))
        redis.call('RPUSH', list, '')
        redis.call('PEXPIRE', list, 60000)
      end
      redis.call('DEL', idlers)
    end
  end
end

-- @ place
-- Schedule job `id` to be ready at client time `run_ms`: ready now when it is not in the future by the
-- client's clock, else delayed (converted to server time by the difference of the two clocks). Returns 'ready', 'first' (it
-- is now the first delayed job of its queue to come due) or 'later'.
local function place(jk, id, queue, prio, run_ms, client_ms)
  if run_ms <= client_ms then
    make_ready(jk, id, queue, prio)
    return 'ready'
  end
  local sched = qkey(queue, 'sched')
  redis.call('HSET', jk, 's', 'scheduled', 'u', now_text())
  redis.call('ZADD', sched, run_ms + now_ms() - client_ms, id)
  if redis.call('ZRANGE', sched, 0, 0)[1] == id then return 'first' end
  return 'later'
end

-- @ notify
-- After jobs became ready or delayed: hand ready ones to idle consumers, wake idle consumers whose
-- queue got an earlier delayed job.
local function notify(changes)
  for queue, change in pairs(changes) do
    if change == 'ready' then offer(queue) else wake_idlers(queue) end
  end
end
-- @ note
local function note(changes, queue, change)
  if change == 'ready' then changes[queue] = 'ready'
  elseif change == 'first' and changes[queue] == nil then changes[queue] = 'first' end
end

-- @ prune_done
-- Completed jobs are kept for their retention in a per-queue list of "<completed ms> <id>", oldest first
-- (cheaper than a sorted set: completion times only grow). Delete those older than `retention_ms` or
-- beyond the newest `retention_max`, at most `budget` of them: bounded work per call, which keeps up
-- because every call that completes jobs prunes more than it adds.
local function prune_done(queue, now, retention_ms, retention_max, budget)
  local done = qkey(queue, 'done')
  local excess = 0
  if retention_max > 0 then excess = redis.call('LLEN', done) - retention_max end
  local cutoff = now - retention_ms
  for _ = 1, budget do
    local head = redis.call('LINDEX', done, 0)
    if not head then return end
    local space = string.find(head, ' ', 1, true)
    if excess <= 0 and tonumber(string.sub(head, 1, space - 1)) > cutoff then return end
    redis.call('LPOP', done)
    local id = string.sub(head, space + 1)
    redis.call('DEL', jkey(id), bkey(id))
    excess = excess - 1
  end
end
