-- Runs Tesseract on one image. This module is loaded in a worker thread of
-- nginx's thread pool (ngx.run_worker_thread), in a Lua VM of its own, so
-- that the minute of CPU an image may take never blocks the event loop:
-- other requests, the control endpoint and the image downloads go on.
-- Only plain Lua is used here (no ngx API: a thread's VM has almost none).
local M = {}

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a") or ""
  f:close()
  return s
end

--- Writes `bytes` to `base`.img, runs `tesseract <img> stdout -l <lang>
-- tsv` with a time limit of `seconds`, removes its files and returns the
-- exit status (124 when the time ran out), the TSV and what Tesseract said
-- on stderr.
function M.run(base, bytes, lang, seconds, tesseract)
  local img, err_path = base .. ".img", base .. ".err"
  local f, why = io.open(img, "wb")
  if not f then return 1, "", "cannot write the image: " .. tostring(why) end
  f:write(bytes)
  f:close()
  -- One OpenMP thread per image: the pool runs one image per CPU already.
  local cmd = string.format(
    "OMP_THREAD_LIMIT=1 timeout -k 2 %.3f %s %s stdout -l %s --psm 3 tsv 2>%s; echo \"exit:$?\"",
    seconds, quote(tesseract), quote(img), quote(lang), quote(err_path))
  local p = io.popen(cmd, "r")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  local stderr = slurp(err_path)
  os.remove(img)
  os.remove(err_path)
  local tsv, status = out:match("^(.-)exit:(%d+)%s*$")
  if not status then return 1, "", "could not run tesseract" end
  return tonumber(status), tsv, stderr
end

return M
