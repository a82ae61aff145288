-- How bin/aliocr prints one image's result or error: text, json or tsv on
-- stdout (errors on stderr in text and tsv), every write flushed at once.
local cjson = require("cjson")
local aliocr = require("aliocr")

local M = {}

local function tsv_field(v)
  if v == nil then return "" end
  return (tostring(v):gsub("\\", "\\\\"):gsub("\t", "\\t"):gsub("\r", "\\r"):gsub("\n", "\\n"))
end

-- JSON null for a missing value, so that every object has the same keys.
local function or_null(v)
  if v == nil then return cjson.null end
  return v
end

-- lua-cjson writes an empty table as {}: an empty list of lines is written
-- through a marker.
local EMPTY_LIST = "\0aliocr-empty-list\0"

local Printer = {}
Printer.__index = Printer

--- A printer in `format` ("text", "json" or "tsv") to the files `stdout`
-- and `stderr`; `several` is true when the run has more than one image
-- (text then puts each under a "==> URL <==" line).
function M.new(format, stdout, stderr, several)
  return setmetatable({ format = format, out = stdout, err = stderr, several = several, printed_any = false },
    Printer)
end

--- Writes to stdout and flushes: true, or nil and the system's message.
function Printer:write(...)
  local ok, err = self.out:write(...)
  if ok then ok, err = self.out:flush() end
  if not ok then return nil, err end
  return true
end

--- What comes before any result: tsv's header line (nothing in the other
-- formats). True, or nil and the message of a failed write.
function Printer:start()
  if self.format ~= "tsv" then return true end
  return self:write("image\tline\tleft\ttop\twidth\theight\twords\n")
end

--- Prints one image's result or error: true, or nil and the message of a
-- failed write to stdout.
function Printer:result(url, res)
  if self.format == "json" then
    local value = { url = url }
    if aliocr.is_error(res) then
      value.error = {
        kind = res.kind, msg = res.msg, status = or_null(res.status), billed = or_null(res.billed),
        code = or_null(res.code), request_id = or_null(res.request_id), retryable = res.retryable == true,
        attempts = res.attempts or 0,
      }
    else
      local lines = {}
      for n, l in ipairs(res.lines) do
        lines[n] = { words = l.words, position = or_null(l.position) }
      end
      value.result = {
        text = res.text, lines = #lines > 0 and lines or EMPTY_LIST, status = res.status,
        billed = res.billed, request_id = or_null(res.request_id), attempts = res.attempts,
      }
    end
    local line = cjson.encode(value):gsub('"\\u0000aliocr%-empty%-list\\u0000"', "[]")
    return self:write(line, "\n")
  elseif aliocr.is_error(res) then
    self.err:write("aliocr: ", url, ": ", tostring(res), "\n")
    self.err:flush()
    return true
  elseif self.format == "tsv" then
    local rows = {}
    for n, l in ipairs(res.lines) do
      local p = l.position or {}
      rows[n] = table.concat({ tsv_field(url), n, tsv_field(p.left), tsv_field(p.top), tsv_field(p.width),
        tsv_field(p.height), tsv_field(l.words) }, "\t") .. "\n"
    end
    if #rows == 0 then return true end
    return self:write(table.concat(rows))
  end
  local header = self.several and ((self.printed_any and "\n" or "") .. "==> " .. url .. " <==\n") or ""
  self.printed_any = true
  return self:write(header, res.text, "\n")
end

return M
