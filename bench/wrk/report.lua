-- Shared by the bench's wrk scripts: done() prints one machine-readable line that bench/ingest.ts parses,
-- because wrk's human summary rounds req/s and mixes units.
local report = {}

function report.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%.0f,"p99_us":%.0f,"max_us":%.0f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end

-- Each wrk thread runs its own Lua state; setup() runs in the main one and numbers them, so ids never collide.
local threads = 0
function report.setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

return report
