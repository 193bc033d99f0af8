-- Read dead letters. ARGV[2] = 'list', [3] offset, [4] limit (most recent first); or ARGV[2] = 'get' and
-- ARGV[3] the id. Returns 9 values per dead letter: id, type, queue, reason, error, traceback, attempts,
-- failed_at, body (false for missing fields).
local ids
if ARGV[2] == 'list' then
  local offset = tonumber(ARGV[3])
  ids = redis.call('ZREVRANGE', DEAD, offset, offset + tonumber(ARGV[4]) - 1)
elseif redis.call('ZSCORE', DEAD, ARGV[3]) then
  ids = { ARGV[3] }
else
  ids = {}
end
local out = {}
for _, id in ipairs(ids) do
  local job = redis.call('HMGET', jkey(id), 't', 'q', 'x', 'e', 'y', 'a', 'f')
  local body = redis.call('GET', bkey(id))
  if body then
    out[#out + 1] = id
    for j = 1, 7 do out[#out + 1] = job[j] end
    out[#out + 1] = body
  end
end
return out
