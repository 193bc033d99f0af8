-- Settle leased jobs, many at once. ARGV[2]: the client's clock (ms); [3], [4]: completed retention (ms,
-- count; 0 ms deletes completed jobs at once); then 7 values per operation: op, id, lease token, queue,
-- and up to three arguments:
--   ack                            the job completed
--   retry   run_at  error          run again at run_at (epoch seconds), keeping the attempt count
--   dead    reason  error  trace   move to the dead letter queue ('' for no error / traceback)
--   release                        give back unrun: ready again in its old place, attempt not counted
--   extend  lease_ms               push the lease expiry to lease_ms from now
--   cancel                         the job stopped on a cancel request: cancelled, kept like completed jobs
-- A retry or release of a job with a cancel request waiting (field h) cancels it instead.
-- An operation applies only while the token is the job's current one and the job is active, or pending
-- because its lease expired and nobody leased it since; settling moves the token on, so a late or
-- repeated settle (a retry after a lost reply) changes nothing. Returns per operation: 1 applied; 2 not
-- applied because this token settled the job already (a repeated settle, or an extend racing the job's
-- own settle: no lease is lost) or the job is gone; 3 not applied because the job's record cannot be read
-- (it went to the dead letter queue); 0 not applied: the lease moved on (it expired and the job was
-- leased again). Warnings for the client to log follow the results.
local KNOWN = { ack = true, retry = true, dead = true, release = true, extend = true, cancel = true }
for i = 5, #ARGV, 7 do
  if not KNOWN[ARGV[i]] then return redis.error_reply('unknown settle operation ' .. ARGV[i]) end
end
local client_ms = tonumber(ARGV[2])
local retention_ms = tonumber(ARGV[3])
local retention_max = tonumber(ARGV[4])
local now = now_ms()
local stamp = seconds(now)
local done_entry = string.format('%d ', now)
local out = {}
local changes = {}
local unleased = {} -- queue -> ids leaving the active set (removed with one command per queue)
local finished = {} -- queue -> "<ms> <id>" entries for the completed list
local SETTLED_FIELDS = { 'k', 's', 'n', 'p', 'd', 'a' }
for i = 5, #ARGV, 7 do
  local op, id, token, queue = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local jk = jkey(id)
  local job = redis.pcall('HMGET', jk, 'k', 's', 'n', 'p', 'd', 'a')
  local state = job[2]
  local applied = 0
  local problem = nil
  if job.err then
    problem = record_problem(id, SETTLED_FIELDS, job)
  elseif job[1] == token and (state == 'pending' or (state == 'active' and op ~= 'ack' and op ~= 'dead'
      and op ~= 'cancel')) then
    -- the numbers this operation uses (acking or dead-lettering an active job uses none)
    if not ((not job[3] or whole(job[3])) and (not job[4] or integer(job[4])) and (not job[6] or whole(job[6])))
    then
      problem = record_problem(id, SETTLED_FIELDS, job)
    elseif state == 'pending' and not job[3] then
      problem = 'it is pending without a sequence number'
    end
  end
  if problem then
    bury(id, queue, problem .. ' (found when a worker settled it: ' .. op .. ')')
    applied = 3
  elseif job[1] == token and (state == 'active' or state == 'pending') then
    applied = 1
    local member = job[3] and ready_member(tonumber(job[3]), id)
    if op == 'extend' then
      if state == 'pending' then
        -- the lease ran out but nobody took the job: the worker still has it, so take it back
        on('ZREM', qkey(queue, 'ready'), member)
        redis.call('HSET', jk, 's', 'active', 'u', stamp)
      end
      on('ZADD', qkey(queue, 'active'), now + tonumber(ARGV[i + 4]), id)
    else
      local leaving = unleased[queue]
      if not leaving then
        leaving = {}
        unleased[queue] = leaving
      end
      leaving[#leaving + 1] = id
      if state == 'pending' then on('ZREM', qkey(queue, 'ready'), member) end
      local next_token = tonumber(token) + 1
      if (op == 'retry' or op == 'release') and redis.call('HEXISTS', jk, 'h') == 1 then
        op = 'cancel' -- a cancel request waits: the job ends here, never to run again
      end
      if op == 'cancel' then
        release_dedupe(job[5], id)
        redis.call('HDEL', jk, 'h')
        if retention_ms > 0 then
          redis.call('HSET', jk, 's', 'cancelled', 'u', stamp, 'k', next_token)
          count_cancelled(queue, 1)
          local entries = finished[queue]
          if not entries then
            entries = {}
            finished[queue] = entries
          end
          entries[#entries + 1] = done_entry .. id
        else
          redis.call('DEL', jk, bkey(id))
        end
      elseif op == 'ack' then
        release_dedupe(job[5], id)
        if retention_ms > 0 then
          redis.call('HSET', jk, 's', 'completed', 'u', stamp, 'k', next_token)
          local entries = finished[queue]
          if not entries then
            entries = {}
            finished[queue] = entries
          end
          entries[#entries + 1] = done_entry .. id
        else
          redis.call('DEL', jk, bkey(id))
        end
      elseif op == 'retry' then
        redis.call('HSET', jk, 'r', ARGV[i + 4], 'e', ARGV[i + 5], 'k', next_token)
        note(changes, queue, place(jk, id, queue, tonumber(job[4] or 0), to_ms(ARGV[i + 4]), client_ms))
      elseif op == 'dead' then
        redis.call('HSET', jk, 's', 'dead', 'x', ARGV[i + 4], 'u', stamp, 'f', stamp, 'k', next_token)
        if ARGV[i + 5] ~= '' then redis.call('HSET', jk, 'e', ARGV[i + 5]) end
        if ARGV[i + 6] ~= '' then redis.call('HSET', jk, 'y', ARGV[i + 6]) else redis.call('HDEL', jk, 'y') end
        on('ZADD', DEAD, now, id)
        count_dead(queue, 1)
        release_dedupe(job[5], id)
      else -- release: back in its old place in line
        redis.call('HSET', jk, 's', 'pending', 'a', math.max(tonumber(job[6] or 1) - 1, 0), 'k', next_token,
          'u', stamp)
        on('ZADD', qkey(queue, 'ready'), -tonumber(job[4] or 0), member)
        note(changes, queue, 'ready')
      end
    end
  elseif not job.err and (not state or (state ~= 'active' and job[1] == tostring(tonumber(token) + 1))) then
    applied = 2 -- (a job leased again after this token's settle is active with a newer token: 0)
  end
  out[#out + 1] = applied
end
for queue, ids in pairs(unleased) do call_many('ZREM', qkey(queue, 'active'), ids) end
for queue, entries in pairs(finished) do
  call_many('RPUSH', qkey(queue, 'done'), entries)
  prune_done(queue, now, retention_ms, retention_max, 2 * #entries + 16)
end
notify(changes)
save_seq()
for _, text in ipairs(notes) do out[#out + 1] = text end
return out
