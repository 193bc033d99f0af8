-- Jobs per queue and state. ARGV[2], [3]: completed retention (ms, count). Returns 6 values per queue:
-- name, ready, delayed, active, completed (kept, pruning past the retention is lazy), dead. Delayed jobs
-- whose time has come count as ready, whether or not a lease has moved them yet.
local retention_max = tonumber(ARGV[3])
local now = now_ms()
local out = {}
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local done = redis.call('LLEN', qkey(queue, 'done'))
  if retention_max > 0 and done > retention_max then done = retention_max end
  local sched = qkey(queue, 'sched')
  local due = redis.call('ZCOUNT', sched, '-inf', now)
  out[#out + 1] = queue
  out[#out + 1] = redis.call('ZCARD', qkey(queue, 'ready')) + redis.call('LLEN', qkey(queue, 'line')) + due
  out[#out + 1] = redis.call('ZCARD', sched) - due
  out[#out + 1] = redis.call('ZCARD', qkey(queue, 'active'))
  out[#out + 1] = done
  out[#out + 1] = tonumber(redis.call('HGET', DEADCOUNT, queue) or '0')
end
return out
