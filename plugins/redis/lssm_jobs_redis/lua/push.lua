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
local queues = {}
local changes = {}
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
    redis.call('SET', bkey(id), ARGV[i + 7])
    local run_ms = to_ms(run_at)
    if run_ms <= client_ms then
      local seq = next_seq()
      redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'p', prio, 'r', run_at, 'c', ARGV[i + 5],
        'u', now_text, 's', 'pending', 'a', 0, 'k', 0, 'n', seq)
      redis.call('ZADD', qkey(queue, 'ready'), -tonumber(prio), ready_member(seq, id))
      changes[queue] = 'ready'
    else
      local sched = qkey(queue, 'sched')
      redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'p', prio, 'r', run_at, 'c', ARGV[i + 5],
        'u', now_text, 's', 'scheduled', 'a', 0, 'k', 0)
      redis.call('ZADD', sched, run_ms + offset, id)
      if changes[queue] == nil and redis.call('ZRANGE', sched, 0, 0)[1] == id then changes[queue] = 'first' end
    end
    if dedupe ~= '' then
      redis.call('HSET', jk, 'd', dedupe)
      redis.call('HSET', DEDUPE, dedupe, id)
    end
    queues[queue] = true
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
save_seq()
for queue, _ in pairs(queues) do redis.call('SADD', QUEUES, queue) end
notify(changes, now, now_text)
return out
