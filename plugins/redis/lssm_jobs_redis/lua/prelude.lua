-- Shared by every script (prepended by scripts.py). ARGV[1] is the hash-tagged key prefix, e.g. "{jobs}:";
-- every key below carries its hash tag, so each script touches one cluster slot. KEYS[1] is the prefix's
-- queue set, passed only so that clients and clusters route the call to that slot.
local P = ARGV[1]
local QUEUES = P .. 'queues'
local SEQ = P .. 'seq'
local DEDUPE = P .. 'dedupe'
local DEAD = P .. 'dead'
local DEADCOUNT = P .. 'deadcount'
local CANCELCOUNT = P .. 'cancelcount'
local ANY_IDLERS = P .. 'idlers'

-- @ jkey
-- A job is a small hash (kept small so Redis stores it compactly as a listpack) plus its body:
--   j:<id>  t type, q queue, p priority, r run_at, c created_at, u updated_at (epoch seconds as text),
--           s status, a attempts, k lease token, n ready sequence number (see take_ready), d dedupe key,
--           e last error, x dead-letter reason, y traceback, f failed_at, h cancel requested (while
--           active: '1'), g last progress report (JSON). Fields at their usual value are
--           left out (every field costs Redis time at each push): no p means priority 0, no r means run_at
--           = created_at, no u means updated_at = created_at, no a or k means 0 attempts, token 0.
--   b:<id>  the serialized envelope, verbatim
local function jkey(id) return P .. 'j:' .. id end
-- @ bkey
local function bkey(id) return P .. 'b:' .. id end
-- @ qkey
local function qkey(queue, kind) return P .. 'q:' .. queue .. ':' .. kind end
-- @ handoff_key
local function handoff_key(consumer) return P .. 'h:' .. consumer end

-- @ server_ms
-- Server time in milliseconds: leases and due times use one clock, whatever the clients' clocks say.
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- @ seconds
local function seconds(ms) return string.format('%.3f', ms / 1000) end

-- @ clock
-- The server clock, read once per call and only when needed.
local clock = nil
-- @ now_ms
local function now_ms()
  if clock == nil then clock = server_ms() end
  return clock
end
-- @ now_text
local function now_text() return seconds(now_ms()) end

-- @ to_ms
-- Epoch seconds (as text, from a client) to milliseconds.
local function to_ms(text) return math.floor(tonumber(text) * 1000) end

-- @ LIVE
local LIVE = { scheduled = true, pending = true, active = true }

-- @ notes warn
-- Warnings for the client to log (it cannot see what happened here otherwise): records this call could not
-- read, and keys of ours that held another type. Each script returns them after its own results.
local notes = {}
local function warn(text) notes[#notes + 1] = text end

-- @ whole integer number
-- A stored number, checked: a record edited by hand (or written by something else) may hold any text, and
-- arithmetic on it would stop a script halfway. whole: a non-negative integer that prints back exactly
-- (attempts, lease tokens, sequence numbers; Lua prints numbers with 14 digits), else nil. integer: any
-- integer (priorities), else nil. number: a finite decimal number (times), else nil. All of them only
-- accept what the client parses too (Lua's tonumber also takes hex, spaces, inf and nan).
local function whole(value)
  local text = tostring(value)
  if #text > 14 or not string.find(text, '^%d+$') then return nil end
  return tonumber(text)
end
local function integer(value)
  local text = tostring(value)
  if not string.find(text, '^%-?%d+$') then return nil end
  return tonumber(text)
end
local function number(value)
  local text = tostring(value)
  local parsed = tonumber(text)
  if parsed and parsed > -math.huge and parsed < math.huge and not string.find(text, '[^%d%.eE%-+]') then
    return parsed
  end
  return nil
end

-- @ shown
-- A stored value quoted in a message: cut short.
local function shown(value)
  if #value > 40 then value = string.sub(value, 1, 40) .. '...' end
  return "'" .. value .. "'"
end

-- @ on set_aside
-- Run a command on one of our structures (a queue's line or sets, the dedupe hash, the dead letters...).
-- When the key holds another type (set by hand, or by another program using the prefix), it is moved
-- aside to <prefix>corrupt:<key without prefix>, kept for inspection, and the command runs on a fresh
-- key: one foreign value never stops the queue, and nothing of ours was in it.
local function set_aside(key)
  local aside = P .. 'corrupt:' .. string.sub(key, #P + 1)
  local kind = redis.call('TYPE', key).ok
  redis.call('RENAME', key, aside)
  warn('key ' .. key .. ' held a ' .. kind .. ', not what lssm-jobs keeps there: moved to ' .. aside)
  return aside
end
local function on(command, key, ...)
  local reply = redis.pcall(command, key, ...)
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'WRONGTYPE', 1, true) then error(reply) end
    set_aside(key)
    return redis.call(command, key, ...)
  end
  return reply
end

-- @ count_dead
-- Add `delta` to the dead letter count of `queue` (a derived counter: a value that is not a number is
-- started again from 0).
local function count_dead(queue, delta)
  local reply = redis.pcall('HINCRBY', DEADCOUNT, queue, delta)
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'WRONGTYPE', 1, true) then
      set_aside(DEADCOUNT)
    else
      warn('the dead letter count of queue ' .. queue .. ' was not a number: counted again from 0')
      redis.call('HDEL', DEADCOUNT, queue)
    end
    reply = redis.call('HINCRBY', DEADCOUNT, queue, delta)
  end
  if reply <= 0 then redis.call('HDEL', DEADCOUNT, queue) end
end

-- @ count_cancelled
-- Add `delta` to the number of cancelled jobs kept (in the done list) of `queue`: counts tells them apart
-- from completed ones with it. A derived counter: a value that is not a number is started again from 0.
local function count_cancelled(queue, delta)
  local reply = redis.pcall('HINCRBY', CANCELCOUNT, queue, delta)
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'WRONGTYPE', 1, true) then set_aside(CANCELCOUNT) else redis.call('HDEL', CANCELCOUNT, queue) end
    reply = redis.call('HINCRBY', CANCELCOUNT, queue, delta)
  end
  if reply <= 0 then redis.call('HDEL', CANCELCOUNT, queue) end
end

-- @ bury
-- Move job `id`, whose record cannot be read (`problem` says why; `queue` is where it was found), to the
-- dead letter queue, keeping what can be kept: its body verbatim (a dead letter with an empty body when it
-- has none), the readable fields of its hash. A key of the wrong type is moved aside (see set_aside). The
-- lease token moves on, so a worker holding the job cannot settle it any more. Never fails.
local BURY_CHECKS = { a = whole, k = whole, n = whole, p = integer, r = number, c = number, u = number }
local function bury(id, queue, problem)
  local jk, bk = jkey(id), bkey(id)
  local kind = redis.call('TYPE', jk).ok
  if kind ~= 'hash' and kind ~= 'none' then set_aside(jk) end
  local body_kind = redis.call('TYPE', bk).ok
  if body_kind ~= 'string' and body_kind ~= 'none' then set_aside(bk) end
  local stamp = now_text()
  for field, check in pairs(BURY_CHECKS) do
    local value = redis.call('HGET', jk, field)
    if value and not check(value) then redis.call('HDEL', jk, field) end
  end
  local fields = redis.call('HMGET', jk, 't', 'q', 'c', 'k', 'd')
  local reason = 'unreadable job record: ' .. problem
  -- the token moves past any delivery's: a worker still running the job is told its settle was ignored
  redis.call('HSET', jk, 's', 'dead', 'x', reason, 'u', stamp, 'f', stamp, 'k', (whole(fields[4]) or 0) + 2,
    't', fields[1] or '?', 'q', fields[2] or queue, 'c', fields[3] or stamp)
  if on('ZADD', DEAD, now_ms(), id) == 1 then count_dead(fields[2] or queue, 1) end
  if fields[5] and on('HGET', DEDUPE, fields[5]) == id then redis.call('HDEL', DEDUPE, fields[5]) end
  warn('job ' .. id .. ' of queue ' .. queue .. ' moved to the dead letter queue: ' .. reason)
end

-- @ body_problem
-- Why job `id` has no usable body (its key is missing or holds another type).
local function body_problem(id)
  local kind = redis.call('TYPE', bkey(id)).ok
  if kind == 'none' then return 'its body (' .. bkey(id) .. ') is missing' end
  return 'its body key ' .. bkey(id) .. ' holds a ' .. kind
end

-- @ record_problem
-- Why the fields `values` (HMGET of `fields`) of job `id` cannot be used, or nil when they can. `values`
-- may be the error of an HMGET on a key of another type; a hash without the status field has no record.
local FIELD_NAMES = { a = 'attempts', k = 'lease token', n = 'sequence number', p = 'priority',
  r = 'run_at', c = 'created_at', u = 'updated_at', s = 'status' }
local FIELD_CHECKS = { a = whole, k = whole, n = whole, p = integer, r = number, c = number }
local EXPECTED = { a = 'a whole number', k = 'a whole number', n = 'a whole number', p = 'an integer' }
local function record_problem(id, fields, values)
  if values.err then return 'its record ' .. jkey(id) .. ' is not a hash' end
  for i, field in ipairs(fields) do
    local value = values[i]
    if value then
      local check = FIELD_CHECKS[field]
      if check and not check(value) then
        return 'field ' .. field .. ' (' .. FIELD_NAMES[field] .. ') is ' .. shown(value) .. ', not '
          .. (EXPECTED[field] or 'a number')
      end
    elseif field == 's' then
      if redis.call('EXISTS', jkey(id)) == 0 then return 'it has no record (' .. jkey(id) .. ')' end
      return 'its record has no status'
    end
  end
  return nil
end

-- @ ready_member
-- Ready-set member: the sequence number in fixed-width hex first, so jobs of equal priority (equal score)
-- leave in the order they became ready; the job id follows from character 17 on.
local function ready_member(seq, id) return string.format('%016x', seq) .. id end
-- @ member_id
local function member_id(member) return string.sub(member, 17) end

-- @ delivery
-- One leased job as handed to a client: "<attempt> <token> <id length> <queue length>\n<id><queue><body>".
local function delivery(attempt, token, id, queue, body)
  return attempt .. ' ' .. token .. ' ' .. #id .. ' ' .. #queue .. '\n' .. id .. queue .. body
end

-- @ handed_job
-- The id, queue and lease token of a delivery in a hand-off list, or nil when `entry` is not one.
local function handed_job(entry)
  local token, id_length, queue_length, start = string.match(entry, '^%d+ (%d+) (%d+) (%d+)\n()')
  if not token then return nil end
  local queue_start = start + tonumber(id_length)
  local queue_end = queue_start + tonumber(queue_length) - 1
  if id_length == '0' or queue_end > #entry then return nil end
  return string.sub(entry, start, queue_start - 1), string.sub(entry, queue_start, queue_end), token
end

-- @ misplaced drop_stale
-- Why job `id`, found where its status `status` does not send it (a stale entry in a queue's order), is
-- lost if that entry is dropped, or nil when the job really is where its status says (the entry is stale:
-- dropping it is right) or is finished. `n` is its sequence number, `queue` its queue (field q, else the
-- queue it was found in). Only called on that rare path, so the O(n) LPOS costs nothing in the usual case.
local function misplaced(id, queue, status, n)
  if status == 'completed' or status == 'dead' or status == 'cancelled' then return nil end
  if status == 'scheduled' then
    if redis.pcall('ZSCORE', qkey(queue, 'sched'), id) == false then
      return 'its status is scheduled, but it is not among the scheduled jobs of queue ' .. queue
    end
  elseif status == 'active' then
    if redis.pcall('ZSCORE', qkey(queue, 'active'), id) == false then
      return 'its status is active, but no lease of queue ' .. queue .. ' holds it'
    end
  elseif status == 'pending' then
    local ready = n and whole(n) and redis.pcall('ZSCORE', qkey(queue, 'ready'), ready_member(whole(n), id))
    if not ready and redis.pcall('LPOS', qkey(queue, 'line'), id) == false then
      return 'its status is pending, but it is in neither the line nor the ready set of queue ' .. queue
    end
  else
    return 'its status is ' .. shown(status) .. ', not one lssm-jobs writes'
  end
  return nil
end
-- An entry naming a job whose status sends it elsewhere is stale and dropped, unless the job is not where
-- its status says (a record edited by hand): then dropping the entry would lose it, so it is buried.
local function drop_stale(id, queue, status, n)
  local problem = misplaced(id, redis.call('HGET', jkey(id), 'q') or queue, status, n)
  if problem then bury(id, queue, problem) end
end

-- @ call_many
-- Run `command key ...values` in calls of at most 1000 values (Lua's unpack has a stack limit): one call
-- for a batch of jobs instead of one per job.
local function call_many(command, key, values)
  for start = 1, #values, 1000 do
    on(command, key, unpack(values, start, math.min(start + 999, #values)))
  end
end

-- @ release_dedupe
-- Forget a dedupe key if it still points at this job (it may have been taken over by a newer job).
local function release_dedupe(key, id)
  if key and on('HGET', DEDUPE, key) == id then redis.call('HDEL', DEDUPE, key) end
end

-- @ seqbox
-- The ready-order counter, read at most once per script and written back once at its very end (save_seq,
-- after any hand-over, which may draw numbers too).
local seqbox = { value = nil, start = nil }
-- @ next_seq
local function next_seq()
  if seqbox.value == nil then
    local stored = redis.pcall('GET', SEQ)
    if type(stored) == 'table' then -- another type: moved aside, and counted on as below
      set_aside(SEQ)
      stored = 'not a string'
    end
    seqbox.value = whole(stored or 0)
    if seqbox.value == nil then
      -- not a number: start again above the numbers drawn so far (one per job from 0: fewer than the
      -- milliseconds since 1970)
      seqbox.value = now_ms()
      warn('the ready-order counter ' .. SEQ .. ' was ' .. shown(stored) .. ': started again at '
        .. seqbox.value)
    end
    seqbox.start = seqbox.value
  end
  seqbox.value = seqbox.value + 1
  return seqbox.value
end
-- @ save_seq
local function save_seq()
  if seqbox.value ~= seqbox.start then redis.call('SET', SEQ, seqbox.value) end
end

-- @ make_ready
-- Make job `id` ready in `queue` with priority `prio`, at the end of its priority's line.
local function make_ready(jk, id, queue, prio)
  if prio == 0 then
    redis.call('HSET', jk, 's', 'pending', 'u', now_text())
    redis.call('HDEL', jk, 'n') -- a new place in line: its number is drawn when it leaves the line
    on('RPUSH', qkey(queue, 'line'), id)
  else
    local seq = next_seq()
    redis.call('HSET', jk, 's', 'pending', 'n', seq, 'u', now_text())
    on('ZADD', qkey(queue, 'ready'), -prio, ready_member(seq, id))
  end
end

-- @ take_ready peek_ready
-- Ready jobs live in two places: the line, a list of the ids of priority-0 jobs in the order they became
-- ready (the common case: a list costs Redis less time and memory than a sorted set), and the ready set
-- (score -priority, member: sequence number and id) for jobs with another priority and for jobs put back
-- in their old place (an expired lease, a release). Jobs in the line have no sequence number yet: each
-- draws one when it leaves the line (lease or hand-over), so numbers follow the line's order, and a job
-- put back keeps its number. A job leaves its queue's order only from the front, so every member of score
-- 0 in the ready set came before every job in the line: the order is the ready set's members of score
-- <= 0, then the line, then the ready set's members of score > 0 (negative priorities).
-- take_ready removes and returns the ids of up to `limit` of them, best first; peek_ready returns up to
-- `limit` of them as {score, id}, best first, removing nothing.
-- A member of the ready set that is not <16 hex digits><id> (written by hand) is dropped with a warning.
local function ready_ids(popped, taken)
  for i = 1, #popped, 2 do
    local member = popped[i]
    if #member > 16 then
      taken[#taken + 1] = member_id(member)
    else -- (peek_ready reports it with the id '')
      warn('dropped ' .. shown(member) .. ' from a ready set: not a job entry')
    end
  end
end
local function take_ready(queue, limit)
  local ready = qkey(queue, 'ready')
  local taken = {}
  local sorted = redis.call('EXISTS', ready) == 1
  if sorted then
    local first = on('ZCOUNT', ready, '-inf', 0)
    if first > 0 then ready_ids(redis.call('ZPOPMIN', ready, math.min(first, limit)), taken) end
  end
  if #taken < limit then
    local popped = on('LPOP', qkey(queue, 'line'), limit - #taken)
    if popped then
      for i = 1, #popped do
        if popped[i] ~= '' then
          taken[#taken + 1] = popped[i]
        else
          warn('dropped an empty entry from ' .. qkey(queue, 'line'))
        end
      end
    end
  end
  if sorted and #taken < limit then ready_ids(redis.call('ZPOPMIN', ready, limit - #taken), taken) end
  return taken
end
local function peek_ready(queue, limit)
  local ready = qkey(queue, 'ready')
  local head = {}
  local sorted = redis.call('EXISTS', ready) == 1
  if sorted then
    local first = on('ZRANGEBYSCORE', ready, '-inf', 0, 'WITHSCORES', 'LIMIT', 0, limit)
    for i = 1, #first, 2 do head[#head + 1] = { tonumber(first[i + 1]), member_id(first[i]) } end
  end
  if #head < limit then
    for _, id in ipairs(on('LRANGE', qkey(queue, 'line'), 0, limit - #head - 1)) do
      head[#head + 1] = { 0, id }
    end
  end
  if sorted and #head < limit then
    local rest = redis.call('ZRANGEBYSCORE', ready, '(0', '+inf', 'WITHSCORES', 'LIMIT', 0, limit - #head)
    for i = 1, #rest, 2 do head[#head + 1] = { tonumber(rest[i + 1]), member_id(rest[i]) } end
  end
  return head
end

-- @ has_ready
local function has_ready(queue) return redis.call('EXISTS', qkey(queue, 'ready'), qkey(queue, 'line')) > 0 end

-- @ read_body
-- Job `id`'s body, or nil and why there is none.
local function read_body(id)
  local body = redis.pcall('GET', bkey(id))
  if type(body) == 'string' then return body end
  return nil, body_problem(id)
end

-- @ LEASED_FIELDS lease_numbers
-- The fields a lease reads and checks (HMGET order), and the quick check of the usual case (it runs for
-- every job leased, so it is plain arithmetic): the attempts and token of a readable record, else nil
-- (record_problem then says why). Numbers Lua reads but the client would not (' 7', '0x1f') are fine
-- here: the lease writes both back as plain numbers.
local LEASED_FIELDS = { 'a', 'k', 'n', 's' }
local function lease_numbers(job)
  if job.err or not job[4] then return nil end
  local attempt, token = tonumber(job[1] or 0), tonumber(job[2] or 0)
  if attempt and token and attempt >= 0 and token >= 0 and attempt < 1e14 and token < 1e14
      and attempt % 1 == 0 and token % 1 == 0 and (not job[3] or whole(job[3])) then
    return attempt, token
  end
  return nil
end

-- @ hand_over
-- Idle consumers block on their own hand-off list (BLPOP) after registering in an idlers set (score: until
-- when, member: 16-character consumer id followed by its lease ms). Giving them ready jobs here, leased
-- in the same atomic step, saves them a round trip: the job travels in the reply to their BLPOP.
-- Returns whether job `id` (just taken from the queue's order) was handed over: a job whose record cannot
-- be read goes to the dead letter queue instead, a stale entry (the job is elsewhere) is dropped (drop_stale).
local function hand_over(queue, id, consumer, lease_ms)
  local jk = jkey(id)
  local job = redis.pcall('HMGET', jk, 'a', 'k', 'n', 's')
  local attempt, token = lease_numbers(job)
  local problem, body = nil, nil
  if attempt then
    if job[4] ~= 'pending' then
      drop_stale(id, queue, job[4], job[3])
      return false
    end
    body, problem = read_body(id)
  else
    problem = record_problem(id, LEASED_FIELDS, job)
  end
  if problem then
    bury(id, queue, problem)
    return false
  end
  attempt, token = attempt + 1, token + 1
  if job[3] then
    redis.call('HSET', jk, 's', 'active', 'a', attempt, 'k', token, 'u', now_text())
  else -- it left the line: its number now
    redis.call('HSET', jk, 's', 'active', 'a', attempt, 'k', token, 'u', now_text(), 'n', next_seq())
  end
  on('ZADD', qkey(queue, 'active'), now_ms() + lease_ms, id)
  local list = handoff_key(consumer)
  on('RPUSH', list, delivery(attempt, token, id, queue, body))
  redis.call('PEXPIRE', list, lease_ms + 60000)
  return true
end

-- @ offer
-- Give ready jobs of `queue` to its idle consumers (those of this queue, then those of every queue),
-- one job each, best first.
local function offer(queue)
  local mine = qkey(queue, 'idlers')
  if redis.call('EXISTS', mine, ANY_IDLERS) == 0 then return end -- the usual case: every consumer is busy
  for _, idlers in ipairs({ mine, ANY_IDLERS }) do
    if redis.call('EXISTS', idlers) == 1 then
      on('ZREMRANGEBYSCORE', idlers, '-inf', now_ms() - 1)
      while true do
        local idler = redis.call('ZPOPMIN', idlers)
        if #idler == 0 then break end
        local lease_ms = whole(string.sub(idler[1], 17))
        if #idler[1] <= 16 or not lease_ms then
          warn('dropped ' .. shown(idler[1]) .. ' from ' .. idlers .. ': not an idle consumer entry')
        else
          local handed = false
          while not handed do
            local best = take_ready(queue, 1)
            if #best > 0 then
              handed = hand_over(queue, best[1], string.sub(idler[1], 1, 16), lease_ms)
            elseif not has_ready(queue) then -- (else what it took was not a job entry)
              redis.call('ZADD', idlers, idler[2], idler[1])
              return
            end
          end
        end
      end
    end
  end
end

-- @ wake_idlers
-- Wake the idle consumers of `queue` without giving them a job (a delayed job now comes due sooner than
-- they planned to look again): an empty entry in their hand-off lists.
local function wake_idlers(queue)
  for _, idlers in ipairs({ qkey(queue, 'idlers'), ANY_IDLERS }) do
    if redis.call('EXISTS', idlers) == 1 then
      for _, idler in ipairs(on('ZRANGEBYSCORE', idlers, now_ms(), '+inf')) do
        local list = handoff_key(string.sub(idler, 1, 16))
        redis.call('RPUSH', list, '')
        redis.call('PEXPIRE', list, 60000)
      end
      redis.call('DEL', idlers)
    end
  end
end

-- @ place
-- Schedule job `id` to be ready at client time `run_ms`: ready now when it is not in the future by the
-- client's clock, else delayed (converted to server time by the difference of the two clocks). Returns 'ready', 'first' (it
-- is now the first delayed job of its queue to come due) or 'later'.
local function place(jk, id, queue, prio, run_ms, client_ms)
  if run_ms <= client_ms then
    make_ready(jk, id, queue, prio)
    return 'ready'
  end
  local sched = qkey(queue, 'sched')
  redis.call('HSET', jk, 's', 'scheduled', 'u', now_text())
  on('ZADD', sched, run_ms + now_ms() - client_ms, id)
  if redis.call('ZRANGE', sched, 0, 0)[1] == id then return 'first' end
  return 'later'
end

-- @ notify
-- After jobs became ready or delayed: hand ready ones to idle consumers, wake idle consumers whose
-- queue got an earlier delayed job.
local function notify(changes)
  for queue, change in pairs(changes) do
    if change == 'ready' then offer(queue) else wake_idlers(queue) end
  end
end
-- @ note
local function note(changes, queue, change)
  if change == 'ready' then changes[queue] = 'ready'
  elseif change == 'first' and changes[queue] == nil then changes[queue] = 'first' end
end

-- @ prune_done
-- Completed (and cancelled) jobs are kept for their retention in a per-queue list of "<completed ms> <id>", oldest first
-- (cheaper than a sorted set: completion times only grow). Delete those older than `retention_ms` or
-- beyond the newest `retention_max`, at most `budget` of them: bounded work per call, which keeps up
-- because every call that completes jobs prunes more than it adds.
local function prune_done(queue, now, retention_ms, retention_max, budget)
  local done = qkey(queue, 'done')
  local excess = 0
  if retention_max > 0 then excess = on('LLEN', done) - retention_max end
  local cutoff = now - retention_ms
  for _ = 1, budget do
    local head = on('LINDEX', done, 0)
    if not head then return end
    local space = string.find(head, ' ', 1, true)
    local at = space and tonumber(string.sub(head, 1, space - 1))
    if not at then
      warn('dropped ' .. shown(head) .. ' from ' .. done .. ': not a completed job entry')
    elseif excess <= 0 and at > cutoff then
      return
    end
    redis.call('LPOP', done)
    if at then
      local id = string.sub(head, space + 1)
      local status = redis.pcall('HGET', jkey(id), 's')
      -- an entry naming a job that is not completed (written by hand) must not delete it
      if not (LIVE[status] or status == 'dead') then redis.call('DEL', jkey(id), bkey(id)) end
      if status == 'cancelled' then count_cancelled(queue, -1) end
    end
    excess = excess - 1
  end
end
