-- Store jobs. ARGV[2]: the client's clock (ms); ARGV[3]: how many kinds of job follow (what the jobs of
-- one enqueue share), 4 values each: type, queue, priority, created_at (epoch seconds); then 5 values per
-- job: id, its kind (1, 2, ...), run_at (epoch seconds; '' when it is created_at), dedupe key ('' for
-- none), body.
-- Returns, per job, 1 when it is stored (now, or by an earlier push of the same id), else the id of the
-- live job holding its dedupe key; then warnings for the client to log (see notes in the prelude).
-- Nothing fails once a job is being stored: the job's keys are fresh (a key of another type in the way is
-- moved aside), every structure written is checked (see on), so no job is ever half-stored.
-- Pushing a job id that already exists stores nothing and reports it stored, so a push retried after a
-- lost reply never duplicates a job.
local client_ms = tonumber(ARGV[2])
local kinds = {}
local first_job = 4 + 4 * tonumber(ARGV[3])
for at = 4, first_job - 1, 4 do
  kinds[tostring((at - 4) / 4 + 1)] = { ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3] }
end
local out = {}
local k = 0 -- this job's place in the call
local queues = {}
local changes = {}
local readied = {} -- queue -> score, member pairs for the ready set (one command per queue)
local lined = {} -- queue -> ids for the line (priority 0; one command per queue)
local line_queue, line_ids, line_count = nil, nil, 0 -- the line being added to (one queue, usually)
local jprefix, bprefix = P .. 'j:', P .. 'b:'
-- A job's first write: its hash key had no body, so a value of another type there is not ours (moved aside).
local function store(jk, ...)
  if type(redis.pcall('HSET', jk, ...)) == 'table' then
    set_aside(jk)
    redis.call('HSET', jk, ...)
  end
end
for i = first_job, #ARGV, 5 do
  local kind = kinds[ARGV[i + 1]]
  local id, run_at, dedupe = ARGV[i], ARGV[i + 2], ARGV[i + 3]
  local job_type, queue, prio, created = kind[1], kind[2], kind[3], kind[4]
  if run_at == '' then run_at = created end
  k = k + 1
  local holder = nil
  if dedupe ~= '' then
    holder = on('HGET', DEDUPE, dedupe)
    -- a holder whose record cannot be read does not hold the key (it goes to the dead letter queue when
    -- a worker meets it)
    if holder and holder ~= id and not LIVE[redis.pcall('HGET', jkey(holder), 's')] then holder = nil end
  end
  if holder and holder ~= id then
    out[k] = holder
  elseif not redis.call('SET', bprefix .. id, ARGV[i + 4], 'NX') then
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
          store(jk, 't', job_type, 'q', queue, 'c', created, 's', 'pending')
        else
          store(jk, 't', job_type, 'q', queue, 'r', run_at, 'c', created, 's', 'pending')
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
        store(jk, 't', job_type, 'q', queue, 'p', prio, 'r', run_at, 'c', created, 's', 'pending', 'n', seq)
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
      store(jk, 't', job_type, 'q', queue, 'r', run_at, 'c', created, 's', 'scheduled')
      if prio ~= '0' then redis.call('HSET', jk, 'p', prio) end
      on('ZADD', sched, run_ms + now_ms() - client_ms, id)
      if changes[queue] == nil and redis.call('ZRANGE', sched, 0, 0)[1] == id then
        changes[queue] = 'first'
      end
      queues[queue] = true
    end
    if dedupe ~= '' then
      redis.call('HSET', jk, 'd', dedupe)
      on('HSET', DEDUPE, dedupe, id)
    end
    out[k] = 1
  end
end
for queue, additions in pairs(readied) do call_many('ZADD', qkey(queue, 'ready'), additions) end
for queue, ids in pairs(lined) do
  local line = qkey(queue, 'line')
  for start = 1, #ids, 1000 do
    local last = math.min(start + 999, #ids)
    local length = on('RPUSH', line, unpack(ids, start, last))
    -- The queue names set needs this queue only when its line was empty: a queue with jobs is in it.
    if start == 1 and length == last then queues[queue] = true end
  end
end
for queue, _ in pairs(queues) do on('SADD', QUEUES, queue) end
notify(changes)
save_seq()
for _, text in ipairs(notes) do out[#out + 1] = text end
return out
