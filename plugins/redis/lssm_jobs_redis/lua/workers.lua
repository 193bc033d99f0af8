-- Live workers (lssm-jobs workers). ARGV[2]: the operation; the rest depends on it. Two keys of the prefix:
--   workers      zset  worker id -> when its record expires (server ms)
--   workerinfo   hash  worker id -> its record (JSON, written by the worker)
-- Expiry uses the server's clock, so workers whose clocks differ still age out on time. Every call first
-- deletes up to 100 records that expired, so dead workers never pile up.
--   register  ARGV[3] id, ARGV[4] record, ARGV[5] ttl ms     -> 1
--   heartbeat ARGV[3] id, ARGV[4] record, ARGV[5] ttl ms     -> 1, or 0 (no live record: nothing stored)
--   unregister ARGV[3] id                                     -> 1
--   list                                                      -> { record, ... } of the live workers
local WORKERS = P .. 'workers'
local INFO = P .. 'workerinfo'
local op = ARGV[2]
local now = server_ms()
local expired = redis.call('ZRANGEBYSCORE', WORKERS, '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  redis.call('ZREM', WORKERS, id)
  redis.call('HDEL', INFO, id)
end
if op == 'register' or op == 'heartbeat' then
  local id = ARGV[3]
  if op == 'heartbeat' and not redis.call('ZSCORE', WORKERS, id) then
    return 0
  end
  redis.call('ZADD', WORKERS, now + tonumber(ARGV[5]), id)
  redis.call('HSET', INFO, id, ARGV[4])
  return 1
elseif op == 'unregister' then
  redis.call('ZREM', WORKERS, ARGV[3])
  redis.call('HDEL', INFO, ARGV[3])
  return 1
elseif op == 'list' then
  local ids = redis.call('ZRANGEBYSCORE', WORKERS, '(' .. now, '+inf')
  if #ids == 0 then return {} end
  return redis.call('HMGET', INFO, unpack(ids))
end
return redis.error_reply('unknown workers operation ' .. tostring(op))
