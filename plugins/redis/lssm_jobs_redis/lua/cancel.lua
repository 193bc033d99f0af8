-- Cancel jobs (queue.cancel) and find cancel requests. ARGV[2]: the operation:
--   cancel <id> <retention ms> <retention count>
--       A scheduled or pending job leaves its queue's structures and becomes cancelled, kept in the done
--       list like completed jobs (deleted at once with a retention of 0 ms), its dedupe key released:
--       returns 'removed'. An active job gets field h (a cancel request its worker polls for):
--       'requested'. Completed, dead or cancelled jobs: 'finished'; no record: 'not_found'.
--   requested <id>...
--       The ids among those given that are active with a cancel request waiting.
-- A job taken off a priority-0 line costs an LREM, scanned from the line's newest end.
local op = ARGV[2]
if op == 'requested' then
  local out = {}
  for i = 3, #ARGV do
    local job = redis.pcall('HMGET', jkey(ARGV[i]), 's', 'h')
    if not job.err and job[1] == 'active' and job[2] then out[#out + 1] = ARGV[i] end
  end
  return out
end
if op ~= 'cancel' then return redis.error_reply('unknown cancel operation ' .. tostring(op)) end
local id = ARGV[3]
local retention_ms = tonumber(ARGV[4])
local retention_max = tonumber(ARGV[5])
local jk = jkey(id)
local job = redis.pcall('HMGET', jk, 's', 'q', 'd', 'n', 'p')
if job.err then return redis.error_reply('job ' .. id .. ' cannot be read: its record is not a hash') end
local state, queue = job[1], job[2]
if not state then return 'not_found' end
if state == 'active' then
  redis.call('HSET', jk, 'h', '1')
  return 'requested'
end
if state ~= 'scheduled' and state ~= 'pending' then return 'finished' end
queue = queue or 'default'
local now = now_ms()
if state == 'scheduled' then
  on('ZREM', qkey(queue, 'sched'), id)
elseif job[4] and whole(job[4]) then
  on('ZREM', qkey(queue, 'ready'), ready_member(tonumber(job[4]), id))
else
  on('LREM', qkey(queue, 'line'), -1, id)
end
release_dedupe(job[3], id)
if retention_ms > 0 then
  redis.call('HSET', jk, 's', 'cancelled', 'u', seconds(now))
  count_cancelled(queue, 1)
  on('RPUSH', qkey(queue, 'done'), string.format('%d ', now) .. id)
  prune_done(queue, now, retention_ms, retention_max, 16)
else
  redis.call('DEL', jk, bkey(id))
end
return 'removed'
