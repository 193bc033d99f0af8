-- Delete dead letters. ARGV[2] = 'ids', then the ids; or ARGV[2] = 'oldest' and ARGV[3] = how many of the
-- oldest to delete (callers loop, so a huge dead letter queue never blocks Redis for long).
-- Returns how many were deleted, then warnings for the client to log. A dead letter whose record cannot
-- be read is deleted all the same, with what was set aside of it (see set_aside).
local ids
if ARGV[2] == 'oldest' then
  ids = on('ZRANGE', DEAD, 0, tonumber(ARGV[3]) - 1)
else
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local deleted = 0
for _, id in ipairs(ids) do
  if on('ZREM', DEAD, id) == 1 then
    local jk = jkey(id)
    local queue = redis.pcall('HGET', jk, 'q')
    redis.call('DEL', jk, bkey(id), P .. 'corrupt:j:' .. id, P .. 'corrupt:b:' .. id)
    if type(queue) == 'string' then count_dead(queue, -1) end
    deleted = deleted + 1
  end
end
local out = { deleted }
for _, text in ipairs(notes) do out[#out + 1] = text end
return out
