-- wrk script: one line per completed request, "<start µs since the epoch> <latency µs> <status>",
-- into <prefix>.<thread number> (the prefix is the script's argument: wrk ... <url> <prefix>).
-- wrk's Lua hooks cannot tell which connection a response belongs to, so each request carries its
-- start time in an X-Start header and the server echoes it back (the bench's example servers do).
-- The clock is gettimeofday() through LuaJIT's FFI, as wrk's own latency clock: wrk's Lua has none.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } fdpass_bench_timeval;
int gettimeofday(fdpass_bench_timeval *tv, void *tz);
]]
local tv = ffi.new("fdpass_bench_timeval")

-- A paced load instead of a saturating one: with FDPASS_BENCH_DELAY_MS set, each connection waits a
-- random delay (exponential, that mean, in whole ms as wrk takes it) before each request, so the
-- connections together send about connections * 1000 / mean requests a second, whatever the latency.
-- wrk reads whether the script has delay() when it loads it, hence an environment variable.
local delay_ms = tonumber(os.getenv("FDPASS_BENCH_DELAY_MS") or "")
if delay_ms then
  function delay()
    return math.floor(-math.log(1 - math.random()) * delay_ms + 0.5)
  end
end

local function now_us()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local out, before, after
function init(args)
  out = io.open(args[1] .. "." .. thread_number, "w")
  -- The request wrk would send (-H headers included), split around the start time.
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["X-Start"] = "\0"
  before, after = wrk.format(nil, nil, headers):match("^(.-)%z(.*)$")
end

function request()
  -- %.0f: tostring() would print 16 digits as 1.7e+15.
  return before .. string.format("%.0f", now_us()) .. after
end

function response(status, headers)
  -- A server that does not echo X-Start gets "0 0 <status>", which the bench refuses to read.
  local start = tonumber(headers["x-start"]) or 0
  out:write(string.format("%.0f %.0f %d\n", start, start > 0 and now_us() - start or 0, status))
end
