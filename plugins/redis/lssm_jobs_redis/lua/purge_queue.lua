-- Delete pending and scheduled jobs of one queue (lssm-jobs queue purge). ARGV[2]: the queue; ARGV[3]: the
-- most ready/delayed entries to take in this call (the caller calls again until fewer are taken, so a huge
-- queue never blocks Redis for long). Active jobs, completed jobs and dead letters are left alone; a purged
-- job's dedupe key is released. Returns { entries taken, jobs deleted }.
local queue = ARGV[2]
local limit = tonumber(ARGV[3])
local taken = 0
local deleted = 0
local function drop(id)
  taken = taken + 1
  local jk = jkey(id)
  local job = redis.call('HMGET', jk, 's', 'd')
  if job[1] == 'pending' or job[1] == 'scheduled' then
    release_dedupe(job[2], id)
    redis.call('DEL', jk, bkey(id))
    deleted = deleted + 1
  end
end
local popped = redis.call('ZPOPMIN', qkey(queue, 'ready'), limit)
for i = 1, #popped, 2 do drop(member_id(popped[i])) end
if taken < limit then
  local line = redis.call('LPOP', qkey(queue, 'line'), limit - taken)
  if line then
    for _, id in ipairs(line) do drop(id) end
  end
end
if taken < limit then
  local delayed = redis.call('ZPOPMIN', qkey(queue, 'sched'), limit - taken)
  for i = 1, #delayed, 2 do drop(delayed[i]) end
end
return { taken, deleted }
