-- Store jobs. ARGV[2]: the client's clock (ms); then 8 values per job: id, type, queue, priority, run_at
-- (epoch seconds), created_at, dedupe key ('' for none), body.
-- Returns, per job, 1 when it is stored (now, or by an earlier push of the same id), else the id of the
-- live job holding its dedupe key.
-- Pushing a job id that already exists stores nothing and reports it stored, so a push retried after a
-- lost reply never duplicates a job.
local client_ms = tonumber(ARGV[2])
-- one INCRBY reserves sequence numbers for every job that is ready at once (skipped ones leave gaps)
local ready_now = 0
for i = 7, #ARGV, 8 do
  if to_ms(ARGV[i]) <= client_ms then ready_now = ready_now + 1 end
end
local seq = 0
if ready_now > 0 then seq = redis.call('INCRBY', SEQ, ready_now) - ready_now end
local out = {}
local queues = {}
local changes = {}
local readied = {} -- queue -> score, member pairs (added with one command per queue)
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
  elseif not redis.call('SET', bkey(id), ARGV[i + 7], 'NX') then
    out[#out + 1] = 1 -- stored before (a repeated push): nothing to do
  else
    local run_ms = to_ms(run_at)
    if run_ms <= client_ms then
      seq = seq + 1
      redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'p', prio, 'r', run_at, 'c', ARGV[i + 5],
        's', 'pending', 'n', seq)
      local additions = readied[queue]
      if not additions then
        additions = {}
        readied[queue] = additions
      end
      additions[#additions + 1] = -tonumber(prio)
      additions[#additions + 1] = ready_member(seq, id)
      changes[queue] = 'ready'
    else
      local sched = qkey(queue, 'sched')
      redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'p', prio, 'r', run_at, 'c', ARGV[i + 5],
        's', 'scheduled')
      redis.call('ZADD', sched, run_ms + now_ms() - client_ms, id)
      if changes[queue] == nil and redis.call('ZRANGE', sched, 0, 0)[1] == id then changes[queue] = 'first' end
    end
    if dedupe ~= '' then
      redis.call('HSET', jk, 'd', dedupe)
      redis.call('HSET', DEDUPE, dedupe, id)
    end
    queues[queue] = true
    out[#out + 1] = 1
  end
end
for queue, additions in pairs(readied) do call_many('ZADD', qkey(queue, 'ready'), additions) end
for queue, _ in pairs(queues) do redis.call('SADD', QUEUES, queue) end
notify(changes)
return out
