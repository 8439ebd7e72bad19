-- wrk script of scripts/bench_serve.sh: POST /v1/predict with the bodies of a file (one JSON body a
-- line), each thread in turn from a random start; done() prints one JSON line of figures.
--   wrk -t1 -c8 -d10s -s bench/wrk_predict.lua http://127.0.0.1:PORT -- BODIES_FILE
-- With WRK_DELAY_MS=D in the environment each connection waits D ms between its requests: a steady
-- rate of about connections x 1000 / D requests/s, not the most the server can take
-- (scripts/soak_serve.sh).
local bodies = {}
local counter = 0

function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
  counter = math.random(#bodies)
end

local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if delay_ms then
  function delay() return delay_ms end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  counter = counter % #bodies + 1
  return wrk.format(nil, "/v1/predict", nil, bodies[counter])
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "errors_status": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_timeout": %d, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000))
end
