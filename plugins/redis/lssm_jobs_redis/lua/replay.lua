-- Move a dead letter back into its queue with its attempts reset, keeping its dedupe key. ARGV[2]: the
-- client's clock (ms); [3]: job id; [4]: run_at (epoch seconds).
-- Returns {1} (replayed), {0} (no such dead letter), {2, holder, key} (another live job holds its dedupe
-- key: nothing changed) or {3, why} (it cannot be replayed: its record is unreadable, or it has no body);
-- warnings for the client to log follow. Everything is checked before anything is written.
local client_ms = tonumber(ARGV[2])
local id = ARGV[3]
if not on('ZSCORE', DEAD, id) then return { 0 } end
local jk = jkey(id)
local job = redis.pcall('HMGET', jk, 'q', 'p', 'k', 'd', 's')
local problem = record_problem(id, { 'q', 'p', 'k', 'd', 's' }, job)
if not problem and job[5] ~= 'dead' then problem = 'its record says it is ' .. job[5] .. ', not dead' end
if not problem and not job[1] then problem = 'its record names no queue' end
if not problem and redis.call('EXISTS', bkey(id)) == 0 then problem = 'it has no body to run' end
if problem then return { 3, problem } end
local queue, dedupe = job[1], job[4]
if dedupe then
  local holder = on('HGET', DEDUPE, dedupe)
  if holder and holder ~= id and LIVE[redis.pcall('HGET', jkey(holder), 's')] then
    return { 2, holder, dedupe }
  end
end
redis.call('ZREM', DEAD, id)
count_dead(queue, -1)
redis.call('HDEL', jk, 'x', 'e', 'y', 'f')
redis.call('HSET', jk, 'a', 0, 'k', tonumber(job[3] or 0) + 1, 'r', ARGV[4])
if dedupe then redis.call('HSET', DEDUPE, dedupe, id) end
local changes = {}
note(changes, queue, place(jk, id, queue, tonumber(job[2] or 0), to_ms(ARGV[4]), client_ms))
on('SADD', QUEUES, queue)
notify(changes)
save_seq()
local out = { 1 }
for _, text in ipairs(notes) do out[#out + 1] = text end
return out
