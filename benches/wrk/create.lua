-- POST one JSON record per request. The runner passes what differs between
-- servers in the environment: BENCH_PATH, BENCH_BODY, BENCH_AUTH (the
-- Authorization header) and BENCH_COOKIE (a session cookie, or empty).
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
end
