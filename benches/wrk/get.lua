-- GET one record by id per request (BENCH_GET_PATH), with the same
-- Authorization header and session cookie as create.lua.
wrk.method = "GET"
wrk.path = os.getenv("BENCH_GET_PATH")
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
end
