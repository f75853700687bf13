-- wrk script: PUT 1 MiB bodies, every one different (thread id and counter up front),
-- each to a fresh name. Used by run.py: wrk -t2 -c8 -d<secs> -s put1m.lua http://127.0.0.1:P
local threads = {}
local n_threads = 0

function setup(thread)
  n_threads = n_threads + 1
  thread:set("tid", n_threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  math.randomseed(tid * 7919)
  -- 1 MiB minus the 32-byte unique prefix; random-ish bytes so nothing compresses.
  local parts = {}
  for i = 1, 4096 do
    parts[i] = string.char(math.random(0, 255)):rep(256)
  end
  filler = table.concat(parts):sub(33)
end

function request()
  counter = counter + 1
  local prefix = string.format("%016d%016d", tid, counter)
  local path = string.format("/call_recording_w%d-%d.mp3", tid, counter)
  return wrk.format("PUT", path, {["Content-Type"] = "audio/mpeg"}, prefix .. filler)
end

function done(summary, latency, requests)
  local ok = summary.requests - summary.errors.status - summary.errors.connect
             - summary.errors.read - summary.errors.write - summary.errors.timeout
  io.write(string.format("WRK_RESULT requests=%d ok=%d status_errors=%d socket_errors=%d duration_us=%d\n",
    summary.requests, ok, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration))
end
