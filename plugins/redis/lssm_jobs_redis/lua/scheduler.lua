-- The scheduler store: schedule rows and tick claims (see lssm_jobs.scheduler.stores for the semantics).
-- ARGV[2] names the operation; its arguments follow. Times and ticks travel as the clients' exact text
-- (Python repr of a float) and are stored as given, so they read back unchanged; numbers are compared with
-- tonumber. Keys: cron:names (set), cron:s:<name> (hash: l last tick, x next tick, p paused, u updated),
-- cron:c:<name> (hash: tick -> claim), cron:open / cron:done (sorted sets of "<name>\31<tick>": unfinished
-- claims by claimed_at, finished ones by completed_at). A claim is "<owner>\31<claimed_at>\31<completed_at or
-- ''>\31<attempts>".
-- A row or claim that cannot be read (written by hand, or by something else) never stops the others: an
-- unreadable row counts as missing (ensure writes it again, with a warning after the row), an unreadable
-- claim as held by nobody who can finish it; a key of another type in the way is moved aside (see on).
local SEP = '\31'
local NAMES = P .. 'cron:names'
local OPEN = P .. 'cron:open'
local DONE = P .. 'cron:done'
local function row_key(name) return P .. 'cron:s:' .. name end
local function claims_key(name) return P .. 'cron:c:' .. name end

local function split(text)
  local parts = {}
  local start = 1
  while true do
    local stop = string.find(text, SEP, start, true)
    if not stop then
      parts[#parts + 1] = string.sub(text, start)
      return parts
    end
    parts[#parts + 1] = string.sub(text, start, stop - 1)
    start = stop + 1
  end
end

-- A time as stored: '' (none) or a number.
local function time_or_empty(value) return value == '' or number(value) ~= nil end

local function state(name)
  local row = redis.pcall('HMGET', row_key(name), 'l', 'x', 'p', 'u')
  if row.err or not number(row[4]) or not (row[3] == '0' or row[3] == '1') then return false end
  if not (row[1] and time_or_empty(row[1]) and row[2] and time_or_empty(row[2])) then return false end
  return { name, row[1], row[2], row[3], row[4] }
end

-- The last settled tick of a row as a number, or nil when none (or not a number).
local function last_tick(value) return number(value) end

local function read_claim(name, tick)
  local raw = redis.pcall('HGET', claims_key(name), tick)
  if type(raw) ~= 'string' then return nil end
  local parts = split(raw)
  local claim = { by = parts[1], at = parts[2], done = parts[3], attempts = whole(parts[4]) }
  if #parts ~= 4 or not number(claim.at) or not claim.attempts or not time_or_empty(claim.done) then
    return 'unreadable'
  end
  return claim
end

local function write_claim(name, tick, claim)
  on('HSET', claims_key(name), tick, claim.by .. SEP .. claim.at .. SEP .. claim.done .. SEP .. claim.attempts)
  local member = name .. SEP .. tick
  if claim.done == '' then
    on('ZADD', OPEN, tonumber(claim.at), member)
  else
    on('ZREM', OPEN, member)
    on('ZADD', DONE, tonumber(claim.done), member)
  end
end

local function claim_reply(name, tick, claim)
  return { name, tick, claim.by, claim.at, claim.done, claim.attempts }
end

local op = ARGV[2]
if op == 'ensure' then
  local name, now = ARGV[3], ARGV[4]
  if on('HSETNX', row_key(name), 'u', now) == 1 then
    redis.call('HSET', row_key(name), 'l', now, 'x', '', 'p', '0')
    on('SADD', NAMES, name)
  end
  local row = state(name)
  if not row then
    -- a row that cannot be read: written again as new (its ticks up to now count as settled)
    redis.call('DEL', row_key(name))
    redis.call('HSET', row_key(name), 'u', now, 'l', now, 'x', '', 'p', '0')
    on('SADD', NAMES, name)
    row = state(name)
    warn('the row of schedule ' .. name .. ' (' .. row_key(name) .. ') could not be read: written again')
  end
  for _, text in ipairs(notes) do row[#row + 1] = text end -- warnings for the client to log
  return row
elseif op == 'get' then
  return state(ARGV[3])
elseif op == 'states' then
  local names = on('SMEMBERS', NAMES)
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local row = state(name)
    if row then out[#out + 1] = row end
  end
  return out
elseif op == 'claim' then
  local name, tick, owner, now, next_tick = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local row = redis.pcall('HMGET', row_key(name), 'l', 'p')
  if row.err or row[2] ~= '0' then return 0 end -- gone, paused, or unreadable (until ensure writes it again)
  local last = last_tick(row[1])
  if last and tonumber(tick) <= last then return 0 end
  if on('HEXISTS', claims_key(name), tick) == 1 then return 0 end
  write_claim(name, tick, { by = owner, at = now, done = '', attempts = 1 })
  redis.call('HSET', row_key(name), 'l', tick, 'x', next_tick, 'u', now)
  return 1
elseif op == 'renew' then
  local name, tick, owner, now = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local claim = read_claim(name, tick)
  if type(claim) ~= 'table' or claim.done ~= '' or claim.by ~= owner then return 0 end
  claim.at = now
  write_claim(name, tick, claim)
  return 1
elseif op == 'complete' then
  local name, tick, owner, now = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local claim = read_claim(name, tick)
  if type(claim) ~= 'table' or claim.done ~= '' then return 0 end
  claim.done = now
  write_claim(name, tick, claim)
  if claim.by == owner then return 1 end
  return 0
elseif op == 'take_over' then
  local name, tick, owner, now, stale_before = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local paused = redis.pcall('HGET', row_key(name), 'p')
  local claim = read_claim(name, tick)
  if paused ~= '0' or type(claim) ~= 'table' or claim.done ~= '' then return 0 end
  if tonumber(claim.at) > tonumber(stale_before) then return 0 end
  claim.by = owner
  claim.at = now
  claim.attempts = claim.attempts + 1
  write_claim(name, tick, claim)
  return 1
elseif op == 'advance' then
  local name, tick, now, next_tick = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local last = redis.pcall('HGET', row_key(name), 'l')
  if type(last) ~= 'string' then return 0 end
  if not last_tick(last) or tonumber(tick) > last_tick(last) then last = tick end
  redis.call('HSET', row_key(name), 'l', last, 'x', next_tick, 'u', now)
  return 1
elseif op == 'set_paused' then
  local name, paused, now = ARGV[3], ARGV[4], ARGV[5]
  local last = redis.pcall('HGET', row_key(name), 'l')
  if type(last) ~= 'string' then return false end
  if not last_tick(last) or (paused == '0' and tonumber(now) > last_tick(last)) then last = now end
  redis.call('HSET', row_key(name), 'p', paused, 'l', last, 'u', now)
  return state(name)
elseif op == 'delete' then
  local name = ARGV[3]
  for _, tick in ipairs(on('HKEYS', claims_key(name))) do
    on('ZREM', OPEN, name .. SEP .. tick)
    on('ZREM', DONE, name .. SEP .. tick)
  end
  redis.call('DEL', claims_key(name))
  on('SREM', NAMES, name)
  return redis.call('DEL', row_key(name))
elseif op == 'claims' then
  local name, limit = ARGV[3], tonumber(ARGV[4])
  local ticks = {}
  for _, tick in ipairs(on('HKEYS', claims_key(name))) do
    if number(tick) then ticks[#ticks + 1] = tick end
  end
  table.sort(ticks, function(a, b) return tonumber(a) > tonumber(b) end)
  local out = {}
  for _, tick in ipairs(ticks) do
    if #out >= limit then break end
    local claim = read_claim(name, tick)
    if type(claim) == 'table' then out[#out + 1] = claim_reply(name, tick, claim) end
  end
  return out
elseif op == 'unfinished' then
  local out = {}
  for _, member in ipairs(on('ZRANGE', OPEN, 0, tonumber(ARGV[3]) - 1)) do
    local parts = split(member)
    local tick = parts[#parts]
    local name = string.sub(member, 1, #member - #tick - 1)
    local claim = read_claim(name, tick)
    if type(claim) == 'table' and number(tick) then out[#out + 1] = claim_reply(name, tick, claim) end
  end
  return out
elseif op == 'prune' then
  local pruned = 0
  for _, set in ipairs({ OPEN, DONE }) do
    for _, member in ipairs(on('ZRANGEBYSCORE', set, '-inf', '(' .. ARGV[3], 'LIMIT', 0, 10000)) do
      local parts = split(member)
      local tick = parts[#parts]
      local name = string.sub(member, 1, #member - #tick - 1)
      redis.call('ZREM', set, member)
      local removed = redis.pcall('HDEL', claims_key(name), tick)
      if type(removed) == 'number' then pruned = pruned + removed end
    end
  end
  return pruned
end
return redis.error_reply('unknown scheduler store operation ' .. tostring(op))
