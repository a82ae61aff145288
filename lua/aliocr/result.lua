--- Results: `text`, `lines` and `data` from a decoded answer of either
-- interface, whatever shape `data` has (a string, an array of {words}, an
-- array of {position, words}), with JSON nulls anywhere.
-- @module aliocr.result
local M = {}

local find, sub, byte, concat = string.find, string.sub, string.byte, table.concat

local position_fields = { "top", "left", "width", "height" }

local function position_of(p)
  if type(p) ~= "table" then return nil end
  -- The usual case, a box with its four numbers: that table itself (shared
  -- with `data`), not a copy.
  if type(p.top) == "number" and type(p.left) == "number" and type(p.width) == "number"
      and type(p.height) == "number" then
    return p
  end
  local out = {}
  for _, f in ipairs(position_fields) do
    if type(p[f]) == "number" then out[f] = p[f] end
  end
  return next(out) and out or nil
end

local function words_of(w)
  if type(w) == "string" then return w end
  if type(w) == "number" then return tostring(w) end
  return ""
end

--- The lines and text of `data`: a string gives one line per
-- newline-separated part; an array gives one line per table element (other
-- elements, JSON nulls among them, are skipped).
function M.lines(data)
  local lines, words = {}, {}
  if type(data) == "string" then
    if data == "" then return lines, data end
    -- Split at each "\n" (dropping a "\r" before it); most answers have
    -- none, and are one line.
    local start, n = 1, 0
    while true do
      local nl = find(data, "\n", start, true)
      local stop = nl and nl - 1 or #data
      if stop >= start and byte(data, stop) == 13 then stop = stop - 1 end
      n = n + 1
      lines[n] = { words = (start == 1 and stop == #data) and data or sub(data, start, stop) }
      if not nl then break end
      start = nl + 1
    end
    return lines, data
  end
  if type(data) == "table" then
    local n = 0
    -- A decoded JSON array has no holes (null is aliocr.null).
    for i = 1, #data do
      local item = data[i]
      if type(item) == "table" then
        local w, p = item.words, item.position
        n = n + 1
        if type(w) == "string" and (p == nil or position_of(p) == p) then
          -- Already a line as documented: the element itself, not a copy.
          lines[n] = item
        else
          w = words_of(w)
          lines[n] = { words = w, position = position_of(p) }
        end
        words[n] = w
      end
    end
  end
  return lines, concat(words, "\n")
end

--- The result of a successful call from its decoded body (`ok` is 1).
function M.build(body, response)
  local data = body.data
  if data == nil or type(data) == "userdata" then
    -- The guide's field table names the array `result`; its example, `data`.
    if body.result ~= nil then data = body.result end
  end
  local lines, text = M.lines(data)
  return {
    ok = body.ok,
    msg = body.msg,
    text = text,
    lines = lines,
    data = data,
    status = response.status,
    billed = true,
    request_id = response.headers["x-ca-request-id"],
  }
end

return M
