-- One location event per POST, each with a distinct user_id so records spread over every partition.
-- Usage: wrk -s bench/wrk/location.lua <url> -- <run id>
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local report = require("report")
setup, done = report.setup, report.done

local prefix = "bench"
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  prefix = (args[1] or "bench") .. "-" .. tostring(thread_id or 1)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"user_id":"%s-%d","timestamp":"2024-01-31T12:00:00Z","lat":%.4f,"long":%.4f}',
    prefix, counter, (counter % 180) - 90, (counter % 360) - 180)
  return wrk.format("POST", nil, headers, body)
end
