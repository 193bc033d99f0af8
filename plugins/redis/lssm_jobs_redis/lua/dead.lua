-- Read dead letters. ARGV[2] = 'list', [3] offset, [4] limit (most recent first); or ARGV[2] = 'get' and
-- ARGV[3] the id. Returns 9 values per dead letter: id, type, queue, reason, error, traceback, attempts,
-- failed_at, body (false for missing fields). Read-only (it runs on a full Redis, and on replicas): a dead
-- letter whose record or body cannot be read is listed with what can be read and the reason.
local ids
local function listed(reply)
  if type(reply) == 'table' and reply.err then return {} end -- (the dead letter set is not ours)
  return reply
end
if ARGV[2] == 'list' then
  local offset = tonumber(ARGV[3])
  ids = listed(redis.pcall('ZREVRANGE', DEAD, offset, offset + tonumber(ARGV[4]) - 1))
elseif type(redis.pcall('ZSCORE', DEAD, ARGV[3])) == 'string' then
  ids = { ARGV[3] }
else
  ids = {}
end
local out = {}
for _, id in ipairs(ids) do
  local job = redis.pcall('HMGET', jkey(id), 't', 'q', 'x', 'e', 'y', 'a', 'f')
  local body = redis.pcall('GET', bkey(id))
  local problems = {}
  if job.err then
    job = {}
    problems[#problems + 1] = 'its record ' .. jkey(id) .. ' is not a hash'
  elseif not job[3] and not job[1] and not job[2] then
    problems[#problems + 1] = 'it has no record (' .. jkey(id) .. ')'
  end
  if type(body) == 'table' then
    problems[#problems + 1] = 'its body key ' .. bkey(id) .. ' is not a string'
  end
  if type(body) ~= 'string' then body = '' end -- (a dead letter of a job that had no body: empty)
  if not whole(job[6]) then job[6] = false end
  if not number(job[7]) then job[7] = false end
  local reason = job[3]
  if #problems > 0 then
    reason = 'unreadable dead letter: ' .. table.concat(problems, '; ')
      .. (reason and (' (' .. reason .. ')') or '')
  end
  out[#out + 1] = id
  out[#out + 1] = job[1] or false
  out[#out + 1] = job[2] or false
  out[#out + 1] = reason or false
  for j = 4, 7 do out[#out + 1] = job[j] or false end
  out[#out + 1] = body
end
return out
