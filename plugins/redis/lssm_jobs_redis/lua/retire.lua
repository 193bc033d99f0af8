-- A consumer stops: forget its idle registrations and give back, unrun, the jobs handed to it that it
-- never took. ARGV[2]: its consumer id (16 characters). Returns how many jobs were given back.
local consumer = ARGV[2]
local registries = { ANY_IDLERS }
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do registries[#registries + 1] = qkey(queue, 'idlers') end
for _, idlers in ipairs(registries) do
  if redis.call('EXISTS', idlers) == 1 then
    for _, idler in ipairs(redis.call('ZRANGE', idlers, 0, -1)) do
      if string.sub(idler, 1, 16) == consumer then redis.call('ZREM', idlers, idler) end
    end
  end
end
local list = handoff_key(consumer)
local handed = redis.call('LRANGE', list, 0, -1)
redis.call('DEL', list)
local changes = {}
local returned = 0
for _, entry in ipairs(handed) do
  if entry ~= '' then
    local token, id_length, queue_length, start = string.match(entry, '^%d+ (%d+) (%d+) (%d+)\n()')
    local id = string.sub(entry, start, start + id_length - 1)
    local queue = string.sub(entry, start + id_length, start + id_length + queue_length - 1)
    local jk = jkey(id)
    local job = redis.call('HMGET', jk, 'k', 's', 'n', 'p', 'a')
    if job[1] == token and job[2] == 'active' then
      redis.call('ZREM', qkey(queue, 'active'), id)
      redis.call('HSET', jk, 's', 'pending', 'a', math.max(tonumber(job[5]) - 1, 0), 'k', tonumber(token) + 1,
        'u', now_text())
      redis.call('ZADD', qkey(queue, 'ready'), -tonumber(job[4] or 0), ready_member(tonumber(job[3]), id))
      note(changes, queue, 'ready')
      returned = returned + 1
    end
  end
end
notify(changes)
save_seq()
return returned
