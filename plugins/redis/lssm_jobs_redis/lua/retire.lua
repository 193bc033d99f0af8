-- A consumer stops: forget its idle registrations and give back, unrun, the jobs handed to it that it
-- never took. ARGV[2]: its consumer id (16 characters). Returns how many jobs were given back, then
-- warnings for the client to log.
local consumer = ARGV[2]
local registries = { ANY_IDLERS }
for _, queue in ipairs(on('SMEMBERS', QUEUES)) do registries[#registries + 1] = qkey(queue, 'idlers') end
for _, idlers in ipairs(registries) do
  if redis.call('EXISTS', idlers) == 1 then
    for _, idler in ipairs(on('ZRANGE', idlers, 0, -1)) do
      if string.sub(idler, 1, 16) == consumer then redis.call('ZREM', idlers, idler) end
    end
  end
end
local list = handoff_key(consumer)
local handed = on('LRANGE', list, 0, -1)
redis.call('DEL', list)
local changes = {}
local returned = 0
local HANDED_FIELDS = { 'k', 's', 'n', 'p', 'a' }
for _, entry in ipairs(handed) do
  if entry ~= '' then
    local id, queue, token = handed_job(entry)
    if not id then
      warn('dropped ' .. shown(entry) .. ' from ' .. list .. ': not a delivery')
    else
      local jk = jkey(id)
      local job = redis.pcall('HMGET', jk, 'k', 's', 'n', 'p', 'a')
      if job.err or (job[1] == token and job[2] == 'active') then
        local problem = record_problem(id, HANDED_FIELDS, job)
        if not problem and not job[3] then problem = 'it is active without a sequence number' end
        if problem then
          bury(id, queue, problem)
        else
          on('ZREM', qkey(queue, 'active'), id)
          redis.call('HSET', jk, 's', 'pending', 'a', math.max(tonumber(job[5] or 1) - 1, 0),
            'k', tonumber(token) + 1, 'u', now_text())
          on('ZADD', qkey(queue, 'ready'), -tonumber(job[4] or 0), ready_member(tonumber(job[3]), id))
          note(changes, queue, 'ready')
          returned = returned + 1
        end
      end
    end
  end
end
notify(changes)
save_seq()
local out = { returned }
for _, text in ipairs(notes) do out[#out + 1] = text end
return out
