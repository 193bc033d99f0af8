-- Lease ready jobs. ARGV[2]: most jobs to lease; [3]: lease ms; [4]: the caller's consumer id (16
-- characters); [5]: ms the caller will block waiting for a hand-off when nothing is ready (0: it will not;
-- else it is registered as idle for that long); [6]: most expired leases / due jobs to move per queue;
-- [7], [8]: completed retention (ms, count); [9...]: queue names (none: every queue).
-- Returns the ms until the next delayed job or lease comes due (-1: none; computed only when nothing was
-- leased), then one delivery (see prelude) per leased job, hand-offs that reached the caller first, then
-- warnings for the client to log, each starting with '!' (a delivery starts with a digit).
-- A job whose record cannot be read (see record_problem) goes to the dead letter queue with the reason and
-- never stops the others: every job is checked before anything of it is written.
local limit = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local consumer = ARGV[4]
local block_ms = tonumber(ARGV[5])
local batch = tonumber(ARGV[6])
local now = now_ms()
local stamp = seconds(now)
local expiry = now + lease_ms
local queues = {}
local every = #ARGV < 9
if every then
  queues = on('SMEMBERS', QUEUES)
else
  for i = 9, #ARGV do queues[#queues + 1] = ARGV[i] end
end
local out = { -1 }
local me = consumer .. lease_ms

-- 0. This consumer is not idle while it is here: drop its registrations (step 4 registers it again).
if every then
  on('ZREM', ANY_IDLERS, me)
else
  for _, queue in ipairs(queues) do on('ZREM', qkey(queue, 'idlers'), me) end
end

--    Jobs handed to this consumer while it was not blocked (its wait had just ended): still its own when
--    their token is unchanged, with the lease renewed from now.
local list = handoff_key(consumer)
local handed = on('LRANGE', list, 0, -1)
if #handed > 0 then
  redis.call('DEL', list)
  for _, entry in ipairs(handed) do
    if entry ~= '' then
      local id, queue, token = handed_job(entry)
      if not id then
        warn('dropped ' .. shown(entry) .. ' from ' .. list .. ': not a delivery')
      else
        local job = redis.pcall('HMGET', jkey(id), 'k', 's')
        if job.err then
          bury(id, queue, record_problem(id, {}, job))
        elseif job[1] == token and job[2] == 'active' then
          on('ZADD', qkey(queue, 'active'), expiry, id)
          out[#out + 1] = entry
          limit = limit - 1
        end
      end
    end
  end
end

-- 1. Jobs whose lease expired (their worker died) are ready again, in their old place; due delayed jobs
--    become ready.
--    Entries naming a job that is elsewhere by now are stale: dropped.
--    A job with a cancel request waiting (field h) whose worker died is cancelled instead: it must not
--    run again.
local EXPIRED_FIELDS, DUE_FIELDS = { 'n', 'p', 's', 'h', 'd' }, { 'p', 's' }
local cancel_retention_ms, cancel_retention_max = tonumber(ARGV[7]), tonumber(ARGV[8])
for _, queue in ipairs(queues) do
  local active = qkey(queue, 'active')
  local ready = qkey(queue, 'ready')
  for _, id in ipairs(on('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, batch)) do
    redis.call('ZREM', active, id)
    local jk = jkey(id)
    local job = redis.pcall('HMGET', jk, 'n', 'p', 's', 'h', 'd')
    local problem = record_problem(id, EXPIRED_FIELDS, job)
    if problem then
      bury(id, queue, problem)
    elseif job[3] == 'active' and job[4] then
      release_dedupe(job[5], id)
      local token = whole(redis.call('HGET', jk, 'k')) or 0
      redis.call('HDEL', jk, 'h')
      if cancel_retention_ms > 0 then
        redis.call('HSET', jk, 's', 'cancelled', 'u', stamp, 'k', token + 1)
        count_cancelled(queue, 1)
        on('RPUSH', qkey(queue, 'done'), string.format('%d ', now) .. id)
        prune_done(queue, now, cancel_retention_ms, cancel_retention_max, 16)
      else
        redis.call('DEL', jk, bkey(id))
      end
    elseif job[3] == 'active' then
      if job[1] then
        redis.call('HSET', jk, 's', 'pending', 'u', stamp)
        on('ZADD', ready, -tonumber(job[2] or 0), ready_member(tonumber(job[1]), id))
      else
        bury(id, queue, 'it is active without a sequence number')
      end
    else
      drop_stale(id, queue, job[3], job[1])
    end
  end
  local sched = qkey(queue, 'sched')
  for _, id in ipairs(on('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, batch)) do
    redis.call('ZREM', sched, id)
    local jk = jkey(id)
    local job = redis.pcall('HMGET', jk, 'p', 's')
    local problem = record_problem(id, DUE_FIELDS, job)
    if problem then
      bury(id, queue, problem)
    elseif job[2] == 'scheduled' then
      make_ready(jk, id, queue, tonumber(job[1] or 0))
    else
      drop_stale(id, queue, job[2], redis.call('HGET', jk, 'n'))
    end
  end
end

-- 2. Take the best `limit` ready jobs: highest priority first, then the order they became ready.
--    Across queues: the queues' own orders (see take_ready) merged by priority, then creation time.
local picked = {}
if limit > 0 then
  if #queues == 1 then
    for _, id in ipairs(take_ready(queues[1], limit)) do picked[#picked + 1] = { queues[1], id } end
  elseif #queues > 1 then
    local streams = {}
    for _, queue in ipairs(queues) do
      local head = peek_ready(queue, limit)
      if #head > 0 then
        for _, entry in ipairs(head) do
          -- creation time orders jobs across queues; one that cannot be read is checked when leased
          entry[3] = tonumber(redis.pcall('HGET', jkey(entry[2]), 'c')) or 0
        end
        streams[#streams + 1] = { queue = queue, head = head, next = 1, taken = 0 }
      end
    end
    while #picked < limit do
      local best, best_entry = nil, nil
      for _, stream in ipairs(streams) do
        local entry = stream.head[stream.next]
        if entry and (best_entry == nil or entry[1] < best_entry[1]
            or (entry[1] == best_entry[1] and entry[3] < best_entry[3])) then
          best, best_entry = stream, entry
        end
      end
      if best == nil then break end
      best.next = best.next + 1
      best.taken = best.taken + 1
      picked[#picked + 1] = { best.queue, best_entry[2] }
    end
    for _, stream in ipairs(streams) do
      if stream.taken > 0 then take_ready(stream.queue, stream.taken) end -- exactly the entries peeked
    end
  end
end

-- 3. Lease them: count the attempt, hand out a new token, set the lease expiry (bodies read and lease
--    expiries written with one command per batch).
if #picked > 0 then
  local body_keys = {}
  for i, pick in ipairs(picked) do body_keys[i] = bkey(pick[2]) end
  local bodies = {}
  for start = 1, #body_keys, 1000 do
    local part = redis.call('MGET', unpack(body_keys, start, math.min(start + 999, #body_keys)))
    for j = 1, #part do bodies[start + j - 1] = part[j] end
  end
  local expiries = {}
  for i, pick in ipairs(picked) do
    local queue, id, body = pick[1], pick[2], bodies[i]
    local jk = jkey(id)
    local job = redis.pcall('HMGET', jk, 'a', 'k', 'n', 's')
    local attempt, token = lease_numbers(job)
    local problem = nil
    if not attempt then
      problem = record_problem(id, LEASED_FIELDS, job)
    elseif not body and job[4] == 'pending' then
      problem = body_problem(id)
    end
    if id == '' then -- not a job entry (dropped by take_ready with a warning)
    elseif problem then
      bury(id, queue, problem)
    elseif job[4] == 'pending' then -- else a stale entry: the job is elsewhere by now (drop_stale)
      attempt, token = attempt + 1, token + 1
      if job[3] then
        redis.call('HSET', jk, 's', 'active', 'a', attempt, 'k', token, 'u', stamp)
      else -- it left the line: its number now (see take_ready)
        redis.call('HSET', jk, 's', 'active', 'a', attempt, 'k', token, 'u', stamp, 'n', next_seq())
      end
      local pairs_of_queue = expiries[queue]
      if not pairs_of_queue then
        pairs_of_queue = {}
        expiries[queue] = pairs_of_queue
      end
      pairs_of_queue[#pairs_of_queue + 1] = expiry
      pairs_of_queue[#pairs_of_queue + 1] = id
      out[#out + 1] = delivery(attempt, token, id, queue, body)
    else
      drop_stale(id, queue, job[4], job[3])
    end
  end
  for queue, values in pairs(expiries) do call_many('ZADD', qkey(queue, 'active'), values) end
end

if #out > 1 then
  -- jobs this call made ready but could not take: offer them to other idle consumers
  for _, queue in ipairs(queues) do
    if has_ready(queue) then offer(queue) end
  end
  save_seq()
  for _, text in ipairs(notes) do out[#out + 1] = '!' .. text end
  return out
end
save_seq()

-- 4. Nothing to do: tidy up, register as idle when the caller will block, and say when to look again.
local retention_ms = tonumber(ARGV[7])
local retention_max = tonumber(ARGV[8])
local next_due = nil
for _, queue in ipairs(queues) do
  prune_done(queue, now, retention_ms, retention_max, batch)
  for _, kind in ipairs({ 'sched', 'active' }) do
    local first = on('ZRANGE', qkey(queue, kind), 0, 0, 'WITHSCORES')
    if first[2] then
      local due = tonumber(first[2]) - now
      if next_due == nil or due < next_due then next_due = due end
    end
  end
  if block_ms > 0 and not every then
    on('ZADD', qkey(queue, 'idlers'), now + block_ms, me)
  end
end
if block_ms > 0 and every then on('ZADD', ANY_IDLERS, now + block_ms, me) end
if next_due ~= nil then out[1] = math.max(next_due, 0) end
for _, text in ipairs(notes) do out[#out + 1] = '!' .. text end
return out
