-- wrk's script for the server's limit: the same POST as the clients send.
-- The interface URL is wrk's; the image URL and the AppCode come from the
-- environment (BENCH_IMAGE, ALIOCR_APPCODE).
local image = os.getenv("BENCH_IMAGE")
wrk.method = "POST"
wrk.body = "url=" .. image:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)
wrk.headers["Authorization"] = "APPCODE " .. os.getenv("ALIOCR_APPCODE")
wrk.headers["Accept"] = "application/json"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8"
