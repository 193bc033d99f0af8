-- Jobs per queue and state. ARGV[2], [3]: completed retention (ms, count). Returns 7 values per queue:
-- name, ready, delayed, active, completed (kept, pruning past the retention is lazy), dead, cancelled
-- (kept like completed jobs, in the same list). Delayed jobs
-- whose time has come count as ready, whether or not a lease has moved them yet.
-- Read-only (it runs on a full Redis, and on replicas): a structure that cannot be read counts 0.
local retention_max = tonumber(ARGV[3])
local now = now_ms()
local function count(command, key, ...)
  local reply = redis.pcall(command, key, ...)
  if type(reply) == 'number' then return reply end
  return tonumber(reply) or 0
end
local out = {}
local queues = redis.pcall('SMEMBERS', QUEUES)
if queues.err then return out end
for _, queue in ipairs(queues) do
  local done = count('LLEN', qkey(queue, 'done'))
  if retention_max > 0 and done > retention_max then done = retention_max end
  local cancelled = whole(count('HGET', CANCELCOUNT, queue)) or 0
  if cancelled > done then cancelled = done end
  local sched = qkey(queue, 'sched')
  local due = count('ZCOUNT', sched, '-inf', now)
  out[#out + 1] = queue
  out[#out + 1] = count('ZCARD', qkey(queue, 'ready')) + count('LLEN', qkey(queue, 'line')) + due
  out[#out + 1] = count('ZCARD', sched) - due
  out[#out + 1] = count('ZCARD', qkey(queue, 'active'))
  out[#out + 1] = done - cancelled
  out[#out + 1] = whole(count('HGET', DEADCOUNT, queue)) or 0
  out[#out + 1] = cancelled
end
return out
