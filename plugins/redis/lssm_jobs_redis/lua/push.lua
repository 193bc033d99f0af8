-- Store jobs. ARGV[2]: the client's clock (ms); then 8 values per job: id, type, queue, priority, run_at
-- (epoch seconds), created_at, dedupe key ('' for none), body.
-- Returns, per job, its id (or the id of the live job holding its dedupe key) and 1 if stored, 0 if not.
-- Pushing a job id that already exists stores nothing and reports it stored, so a push retried after a
-- lost reply never duplicates a job.
local client_ms = tonumber(ARGV[2])
local now = server_ms()
local offset = now - client_ms
local now_text = seconds(now)
local out = {}
local touched = {}
local wake = {}
for i = 3, #ARGV, 8 do
  local id, queue, prio, run_at, dedupe = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 6]
  local holder = nil
  if dedupe ~= '' then
    holder = redis.call('HGET', DEDUPE, dedupe)
    if holder and holder ~= id and not LIVE[redis.call('HGET', jkey(holder), 's') or ''] then holder = nil end
  end
  local jk = jkey(id)
  if holder and holder ~= id then
    out[#out + 1] = holder
    out[#out + 1] = 0
  elseif redis.call('EXISTS', jk) == 1 then
    out[#out + 1] = id
    out[#out + 1] = 1
  else
    local run_ms = to_ms(run_at)
    local score = -tonumber(prio)
    if run_ms <= client_ms then
      local member = ready_member(next_seq(), id)
      redis.call('HSET', jk, 'b', ARGV[i + 7], 't', ARGV[i + 1], 'q', queue, 'p', prio, 'r', run_at,
        'c', ARGV[i + 5], 'u', now_text, 's', 'pending', 'a', 0, 'k', 0, 'n', member)
      redis.call('ZADD', qkey(queue, 'ready'), score, member)
      wake[queue] = true
    else
      local sched = qkey(queue, 'sched')
      redis.call('HSET', jk, 'b', ARGV[i + 7], 't', ARGV[i + 1], 'q', queue, 'p', prio, 'r', run_at,
        'c', ARGV[i + 5], 'u', now_text, 's', 'scheduled', 'a', 0, 'k', 0)
      redis.call('ZADD', sched, run_ms + offset, id)
      if not wake[queue] and redis.call('ZRANGE', sched, 0, 0)[1] == id then wake[queue] = true end
    end
    if dedupe ~= '' then
      redis.call('HSET', jk, 'd', dedupe)
      redis.call('HSET', DEDUPE, dedupe, id)
    end
    touched[queue] = true
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
save_seq()
local force = {}
for queue, _ in pairs(touched) do
  if redis.call('SADD', QUEUES, queue) == 1 then
    -- a new queue: consumers of "every queue" do not watch it yet, so always tell them
    force[queue] = true
    wake[queue] = true
  end
end
wake_queues(wake, force)
return out
