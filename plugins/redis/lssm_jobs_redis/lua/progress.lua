-- Store a running job's progress report. ARGV[2]: the job id; ARGV[3]: the report (JSON text).
-- Applies only while the job is live (scheduled, pending or active): a report arriving after the job
-- settled must not bring its record back. Returns 1 when stored, else 0.
local jk = jkey(ARGV[2])
local state = redis.pcall('HGET', jk, 's')
if type(state) ~= 'string' or not LIVE[state] then return 0 end
redis.call('HSET', jk, 'g', ARGV[3])
return 1
