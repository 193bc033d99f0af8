-- Store jobs. ARGV[2]: the client's clock (ms); then 8 values per job: id, type, queue, priority, run_at
-- (epoch seconds), created_at, dedupe key ('' for none), body.
-- Returns, per job, 1 when it is stored (now, or by an earlier push of the same id), else the id of the
-- live job holding its dedupe key.
-- Pushing a job id that already exists stores nothing and reports it stored, so a push retried after a
-- lost reply never duplicates a job.
local client_ms = tonumber(ARGV[2])
local out = {}
local k = 0 -- this job's place in the call
local queues = {}
local changes = {}
local readied = {} -- queue -> score, member pairs for the ready set (one command per queue)
local lined = {} -- queue -> ids for the line (priority 0; one command per queue)
local line_queue, line_ids, line_count = nil, nil, 0 -- the line being added to (one queue, usually)
local jprefix, bprefix = P .. 'j:', P .. 'b:'
for i = 3, #ARGV, 8 do
  local id, queue, prio, run_at, created, dedupe = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
    ARGV[i + 6]
  k = k + 1
  local holder = nil
  if dedupe ~= '' then
    holder = redis.call('HGET', DEDUPE, dedupe)
    if holder and holder ~= id and not LIVE[redis.call('HGET', jkey(holder), 's') or ''] then holder = nil end
  end
  if holder and holder ~= id then
    out[k] = holder
  elseif not redis.call('SET', bprefix .. id, ARGV[i + 7], 'NX') then
    out[k] = 1 -- stored before (a repeated push): nothing to do
  else
    local jk = jprefix .. id
    -- Due now when it runs at its creation time (the common case: no number to parse), or when its time
    -- has come by the client's clock.
    local run_ms = nil
    if run_at ~= created then run_ms = math.floor(tonumber(run_at) * 1000) end
    if run_ms == nil or run_ms <= client_ms then
      if prio == '0' then -- into the line; its sequence number is drawn when it leaves it (see take_ready)
        if run_at == created then
          redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'c', created, 's', 'pending')
        else
          redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'r', run_at, 'c', created, 's', 'pending')
        end
        if queue ~= line_queue then
          line_ids = lined[queue]
          if not line_ids then
            line_ids = {}
            lined[queue] = line_ids
          end
          line_queue, line_count = queue, #line_ids
        end
        line_count = line_count + 1
        line_ids[line_count] = id
      else
        local seq = next_seq()
        redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'p', prio, 'r', run_at, 'c', created,
          's', 'pending', 'n', seq)
        local additions = readied[queue]
        if not additions then
          additions = {}
          readied[queue] = additions
        end
        local n = #additions
        additions[n + 1] = -tonumber(prio)
        additions[n + 2] = ready_member(seq, id)
        queues[queue] = true
      end
      changes[queue] = 'ready'
    else
      local sched = qkey(queue, 'sched')
      redis.call('HSET', jk, 't', ARGV[i + 1], 'q', queue, 'r', run_at, 'c', created, 's', 'scheduled')
      if prio ~= '0' then redis.call('HSET', jk, 'p', prio) end
      redis.call('ZADD', sched, run_ms + now_ms() - client_ms, id)
      if changes[queue] == nil and redis.call('ZRANGE', sched, 0, 0)[1] == id then changes[queue] = 'first' end
      queues[queue] = true
    end
    if dedupe ~= '' then
      redis.call('HSET', jk, 'd', dedupe)
      redis.call('HSET', DEDUPE, dedupe, id)
    end
    out[k] = 1
  end
end
for queue, additions in pairs(readied) do call_many('ZADD', qkey(queue, 'ready'), additions) end
for queue, ids in pairs(lined) do
  local line = qkey(queue, 'line')
  for start = 1, #ids, 1000 do
    local last = math.min(start + 999, #ids)
    local length = redis.call('RPUSH', line, unpack(ids, start, last))
    -- The queue names set needs this queue only when its line was empty: a queue with jobs is in it.
    if start == 1 and length == last then queues[queue] = true end
  end
end
for queue, _ in pairs(queues) do redis.call('SADD', QUEUES, queue) end
notify(changes)
save_seq()
return out
