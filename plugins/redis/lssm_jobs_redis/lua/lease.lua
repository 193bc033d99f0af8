-- Lease ready jobs. ARGV[2]: most jobs to lease; [3]: lease ms; [4]: ms the caller will wait when none is
-- ready (0: it will not; else the queues are flagged idle for that long, so producers publish a wake-up);
-- [5]: most expired leases / due jobs to move per queue and call; [6], [7]: completed retention (ms, count);
-- [8...]: queue names (none: every queue).
-- Returns the ms until the next delayed job or lease comes due (-1: none; only computed when nothing was
-- leased), the number of queue names that follow, those names, then one value per leased job:
-- "<attempt> <lease token> <index of its queue name, from 1> <length of id>\n<id><body>" (one reply
-- element per job keeps parsing cheap for the client).
local limit = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local idle_ms = tonumber(ARGV[4])
local batch = tonumber(ARGV[5])
local now = server_ms()
local now_text = seconds(now)
local queues = {}
if #ARGV >= 8 then
  for i = 8, #ARGV do queues[#queues + 1] = ARGV[i] end
else
  queues = redis.call('SMEMBERS', QUEUES)
end

-- 1. Jobs whose lease expired (their worker died) are ready again, in their old place; due delayed jobs
--    become ready.
for _, queue in ipairs(queues) do
  local active = qkey(queue, 'active')
  local ready = qkey(queue, 'ready')
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, batch)) do
    redis.call('ZREM', active, id)
    local jk = jkey(id)
    local job = redis.call('HMGET', jk, 'n', 'p', 's')
    if job[1] and job[3] == 'active' then
      redis.call('HSET', jk, 's', 'pending', 'u', now_text)
      redis.call('ZADD', ready, -tonumber(job[2]), job[1])
    end
  end
  local sched = qkey(queue, 'sched')
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, batch)) do
    redis.call('ZREM', sched, id)
    local jk = jkey(id)
    local job = redis.call('HMGET', jk, 'p', 's')
    if job[1] and job[2] == 'scheduled' then
      local member = ready_member(next_seq(), id)
      redis.call('HSET', jk, 's', 'pending', 'n', member, 'u', now_text)
      redis.call('ZADD', ready, -tonumber(job[1]), member)
    end
  end
end
save_seq()

-- 2. Take the best `limit` ready jobs: highest priority first, then the order they became ready.
local picked = {}
if limit > 0 then
  if #queues == 1 then
    local popped = redis.call('ZPOPMIN', qkey(queues[1], 'ready'), limit)
    for i = 1, #popped, 2 do picked[#picked + 1] = { queues[1], popped[i] } end
  elseif #queues > 1 then
    local candidates = {}
    for _, queue in ipairs(queues) do
      local head = redis.call('ZRANGE', qkey(queue, 'ready'), 0, limit - 1, 'WITHSCORES')
      for i = 1, #head, 2 do candidates[#candidates + 1] = { tonumber(head[i + 1]), head[i], queue } end
    end
    table.sort(candidates, function(x, y)
      if x[1] ~= y[1] then return x[1] < y[1] end
      return x[2] < y[2]
    end)
    for i = 1, math.min(limit, #candidates) do
      local candidate = candidates[i]
      redis.call('ZREM', qkey(candidate[3], 'ready'), candidate[2])
      picked[#picked + 1] = { candidate[3], candidate[2] }
    end
  end
end

-- 3. Lease them: count the attempt, hand out a new token, set the lease expiry.
local out = { -1, 0 }
local jobs = {}
local queue_index = {}
local expiry = now + lease_ms
for _, pick in ipairs(picked) do
  local queue = pick[1]
  if not queue_index[queue] then
    out[#out + 1] = queue
    out[2] = out[2] + 1
    queue_index[queue] = out[2]
  end
  local id = member_id(pick[2])
  local jk = jkey(id)
  local job = redis.call('HMGET', jk, 'a', 'k', 'b')
  if job[3] then
    local attempt = tonumber(job[1]) + 1
    local token = tonumber(job[2]) + 1
    redis.call('HSET', jk, 's', 'active', 'a', attempt, 'k', token, 'u', now_text)
    redis.call('ZADD', qkey(queue, 'active'), expiry, id)
    jobs[#jobs + 1] = attempt .. ' ' .. token .. ' ' .. queue_index[queue] .. ' ' .. #id .. '\n' .. id .. job[3]
  end
end
for _, job in ipairs(jobs) do out[#out + 1] = job end

-- 4. Nothing to do: tidy up, tell the caller when to look again, and ask producers for a wake-up.
if #jobs == 0 then
  local retention_ms = tonumber(ARGV[6])
  local retention_max = tonumber(ARGV[7])
  local next_due = nil
  for _, queue in ipairs(queues) do
    prune_done(queue, now, retention_ms, retention_max, batch)
    for _, kind in ipairs({ 'sched', 'active' }) do
      local first = redis.call('ZRANGE', qkey(queue, kind), 0, 0, 'WITHSCORES')
      if first[2] then
        local due = tonumber(first[2]) - now
        if next_due == nil or due < next_due then next_due = due end
      end
    end
    if idle_ms > 0 then redis.call('SET', qkey(queue, 'idle'), 1, 'PX', idle_ms) end
  end
  if next_due ~= nil then out[1] = math.max(next_due, 0) end
end
return out
