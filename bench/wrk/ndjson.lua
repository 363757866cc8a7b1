-- NDJSON POSTs of 1,000 location events each. Bodies are built once per thread and rotated, so wrk spends its
-- CPU on sending, not on string building; every event in a body has its own user_id.
-- Usage: wrk -s bench/wrk/ndjson.lua <url> -- <run id> [events per body]
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local report = require("report")
setup, done = report.setup, report.done

local BODIES = 16
local requests = {}
local next_request = 0

function init(args)
  local prefix = (args[1] or "bench") .. "-" .. tostring(thread_id or 1)
  local events = tonumber(args[2]) or 1000
  local headers = { ["Content-Type"] = "application/x-ndjson" }
  for b = 1, BODIES do
    local lines = {}
    for i = 1, events do
      lines[i] = string.format(
        '{"user_id":"%s-%d-%d","timestamp":1706702400,"lat":%.4f,"long":%.4f}',
        prefix, b, i, (i % 180) - 90, (i % 360) - 180)
    end
    requests[b] = wrk.format("POST", nil, headers, table.concat(lines, "\n") .. "\n")
  end
end

function request()
  next_request = next_request % BODIES + 1
  return requests[next_request]
end
