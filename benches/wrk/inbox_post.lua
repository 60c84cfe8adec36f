-- POST one inbox message per request: POST /backend/documents/WRITE/messages/ID.
-- BENCH_TOKENS: the inboxes' write tokens, comma-separated; BENCH_IDS: message
-- ids per inbox; BENCH_ID_BASE: the first message id. Request n (1, 2, ...)
-- goes to slot s = n mod (inboxes x ids): inbox s mod inboxes, message id
-- BENCH_ID_BASE + floor(s / inboxes), with "#" = n, so every message keeps
-- being replaced by a higher revision and no single row takes all writes.
-- Run with one thread (-t1): n is per thread. done() prints each status's
-- count ("status 200 12345") and the last n ("last_revision 12345").
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  tokens[#tokens + 1] = token
end
local ids = tonumber(os.getenv("BENCH_IDS") or "8")
local id_base = tonumber(os.getenv("BENCH_ID_BASE") or "0")
local slots = #tokens * ids
local headers = {["Content-Type"] = "application/json"}

n = 0
statuses = {}

request = function()
  n = n + 1
  local slot = n % slots
  local inbox = slot % #tokens
  local id = id_base + math.floor(slot / #tokens)
  local body = string.format('{"#":%d,"type":"temperature","value":21.1,"sensor":%d}', n, slot)
  return wrk.format("POST", string.format("/backend/documents/%s/messages/%016x", tokens[inbox + 1], id),
                    headers, body)
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local threads = {}

setup = function(thread)
  threads[#threads + 1] = thread
end

done = function(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      io.write(string.format("status %d %d\n", status, count))
    end
    io.write(string.format("last_revision %d\n", thread:get("n")))
  end
end
