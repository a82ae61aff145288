-- The tesseract OCR backend: reads the text and the line boxes of a fetched
-- image with Debian's tesseract-ocr (languages from --lang, chi_sim+eng by
-- default) and answers in the API guide's shapes:
--   interface one, `show` absent, empty or "0": `data` is the text of every
--     line, joined without a separator (as in the guide's example);
--   interface one, `show` "1": `data` is an array of {words}, one per line;
--   interface two: `data` is an array of {position, words}, one per line,
--     `position` being the line's box {top, left, width, height} in pixels.
-- Tesseract runs in nginx's thread pool (see ocr_thread.lua), so a slow
-- image never blocks the worker.
local cjson = require("cjson.safe")
local semaphore = require("ngx.semaphore")

-- luacheck: push ignore 143 (luacheck's ngx_lua predates run_worker_thread)
local run_worker_thread = ngx.run_worker_thread
-- luacheck: pop

local M = {}

M.POOL = "aliocr_ocr"

local counter = 0
-- At most one image per pool thread is handed to the pool. Measured with
-- Debian's lua-nginx-module 0.10.23: a task posted while every thread was
-- busy (the module then makes one more Lua VM for it) stalled this worker's
-- event loop until a thread was free; one task per thread never does.
local slots

-- A space goes between two words unless either side is a non-ASCII
-- character (Chinese is written without spaces; Tesseract's chi_sim cuts
-- it into words all the same).
local function join(words)
  local out = {}
  for i, w in ipairs(words) do
    if i > 1 and out[#out]:byte(-1) < 128 and w:byte(1) < 128 then out[#out + 1] = " " end
    out[#out + 1] = w
  end
  return table.concat(out)
end

--- The lines of Tesseract's TSV output: { {words=, position={top,left,width,height}} },
-- in reading order; lines without a word are dropped.
function M.parse_tsv(tsv)
  local lines, by_key = {}, {}
  for row in tsv:gmatch("[^\n]+") do
    local f = {}
    for field in (row .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    local level = tonumber(f[1])
    if level == 4 or level == 5 then
      local key = f[3] .. "." .. f[4] .. "." .. f[5]
      if level == 4 then
        local line = {
          words = {},
          position = { left = tonumber(f[7]), top = tonumber(f[8]), width = tonumber(f[9]), height = tonumber(f[10]) },
        }
        by_key[key] = line
        lines[#lines + 1] = line
      else
        local text = (f[12] or ""):gsub("^%s+", ""):gsub("%s+$", "")
        local line = by_key[key]
        if line and text ~= "" then line.words[#line.words + 1] = text end
      end
    end
  end
  local out = {}
  for _, line in ipairs(lines) do
    if #line.words > 0 then out[#out + 1] = { words = join(line.words), position = line.position } end
  end
  return out
end

--- The JSON body for an answer made of `lines` (see parse_tsv).
function M.body(api, show, lines)
  local data
  if api == "handwriting" then
    data = lines
  else
    local texts = {}
    for i, line in ipairs(lines) do texts[i] = line.words end
    if show == "1" then
      data = {}
      for i, t in ipairs(texts) do data[i] = { words = t } end
    else
      data = table.concat(texts)
    end
  end
  -- An empty array must stay an array.
  if type(data) == "table" and #data == 0 then
    return '{"ok":1,"msg":"查询成功","data":[]}'
  end
  return cjson.encode({ ok = 1, msg = "查询成功", data = data })
end

--- Recognises `bytes` (an image already checked for its format). Returns
-- the lines, or nil and "timeout" when Tesseract took `seconds` or more, or
-- nil and "decode" when it could not read the image.
function M.lines(bytes, s, seconds)
  if not slots then slots = semaphore.new(s.ocr.threads) end
  -- Waiting for a free thread counts against the time allowed.
  local started = ngx.now()
  if not slots:wait(seconds) then return nil, "timeout" end
  ngx.update_time()
  seconds = seconds - (ngx.now() - started)
  counter = counter + 1
  local base = string.format("%s/ocr-%d-%d", s.ocr.tmp, ngx.worker.pid(), counter)
  local ok, status, tsv, stderr = run_worker_thread(M.POOL, "aliocr_emu.ocr_thread", "run",
    base, bytes, s.ocr.lang, math.max(0.001, seconds), s.ocr.command)
  slots:post()
  if not ok then
    ngx.log(ngx.ERR, "tesseract thread: ", tostring(status))
    return nil, "failed"
  end
  if status == 124 or status == 137 then return nil, "timeout" end
  if status ~= 0 then
    ngx.log(ngx.WARN, "tesseract exit ", status, ": ", stderr)
    return nil, "decode"
  end
  return M.parse_tsv(tsv)
end

return M
