-- wrk script: single pushes, as a service sends them.
--   FLASHQ_TOKEN=fq_... wrk -t2 -c16 -d30s --latency -s bench/wrk/push.lua \
--       http://127.0.0.1:8000/api/v1/queues/wrk/jobs
-- The token comes from the environment, never from the command line or the URL.
local token = os.getenv("FLASHQ_TOKEN")
if token == nil or token == "" then
  error("set FLASHQ_TOKEN to a token allowed to push to the queue")
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.body = '{"data": {"order": 12345, "note": "measured with wrk"}}'
