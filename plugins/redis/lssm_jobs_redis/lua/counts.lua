-- Jobs per queue and state. ARGV[2], [3]: completed retention (ms, count). Returns 6 values per queue:
-- name, ready, delayed, active, completed (kept, pruning past the retention is lazy), dead.
-- Read-only (it runs on a full Redis, and on replicas): a structure that cannot be read counts 0.
local retention_max = tonumber(ARGV[3])
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
  out[#out + 1] = queue
  out[#out + 1] = count('ZCARD', qkey(queue, 'ready')) + count('LLEN', qkey(queue, 'line'))
  out[#out + 1] = count('ZCARD', qkey(queue, 'sched'))
  out[#out + 1] = count('ZCARD', qkey(queue, 'active'))
  out[#out + 1] = done
  out[#out + 1] = whole(count('HGET', DEADCOUNT, queue)) or 0
end
return out
