-- Move a dead letter back into its queue with its attempts reset, keeping its dedupe key. ARGV[2]: the
-- client's clock (ms); [3]: job id; [4]: run_at (epoch seconds). Returns 1, 0 when there is no such dead
-- letter, or the id of the live job holding its dedupe key (then nothing changed).
local client_ms = tonumber(ARGV[2])
local id = ARGV[3]
if not redis.call('ZSCORE', DEAD, id) then return 0 end
local jk = jkey(id)
local job = redis.call('HMGET', jk, 'q', 'p', 'k', 'd')
if not job[1] then return 0 end
if job[4] then
  local holder = redis.call('HGET', DEDUPE, job[4])
  if holder and holder ~= id and LIVE[redis.call('HGET', jkey(holder), 's') or ''] then return holder end
end
redis.call('ZREM', DEAD, id)
local queue = job[1]
if tonumber(redis.call('HINCRBY', DEADCOUNT, queue, -1)) <= 0 then redis.call('HDEL', DEADCOUNT, queue) end
redis.call('HDEL', jk, 'x', 'e', 'y', 'f')
redis.call('HSET', jk, 'a', 0, 'k', tonumber(job[3] or 0) + 1, 'r', ARGV[4])
if job[4] then redis.call('HSET', DEDUPE, job[4], id) end
local changes = {}
note(changes, queue, place(jk, id, queue, tonumber(job[2] or 0), to_ms(ARGV[4]), client_ms))
redis.call('SADD', QUEUES, queue)
notify(changes)
save_seq()
return 1
