-- Delete dead letters. ARGV[2] = 'ids', then the ids; or ARGV[2] = 'oldest' and ARGV[3] = how many of the
-- oldest to delete (callers loop, so a huge dead letter queue never blocks Redis for long).
-- Returns how many were deleted.
local ids
if ARGV[2] == 'oldest' then
  ids = redis.call('ZRANGE', DEAD, 0, tonumber(ARGV[3]) - 1)
else
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local deleted = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', DEAD, id) == 1 then
    local jk = jkey(id)
    local queue = redis.call('HGET', jk, 'q')
    redis.call('DEL', jk, bkey(id))
    if queue and tonumber(redis.call('HINCRBY', DEADCOUNT, queue, -1)) <= 0 then
      redis.call('HDEL', DEADCOUNT, queue)
    end
    deleted = deleted + 1
  end
end
return deleted
