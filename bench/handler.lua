-- The nginx benchmark's handlers (see bench/nginx.conf): /ocr reads an image
-- through aliocr's cosocket transport and answers the text as JSON; /direct
-- answers the same JSON with no upstream call, the handler's own cost.
local aliocr = require("aliocr")
local cjson = require("cjson")

local M = {}

local client
local canned = { text = "冰心散文精选", billed = true }

local function answer(t)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(t))
end

function M.ocr()
  if not client then
    client = aliocr.new({ urls = { advanced = os.getenv("BENCH_ADVANCED") }, retries = 0 })
  end
  local res, err = client:recognize(os.getenv("BENCH_IMAGE"))
  if not res then
    ngx.status = 502
    return answer({ error = tostring(err) })
  end
  return answer({ text = res.text, billed = res.billed })
end

function M.direct()
  return answer(canned)
end

return M
