--- A journal of a batch's outcomes: a file of JSON lines, one object per
-- image that got an outcome, written as each one happens, so that a rerun
-- can skip what is done and never pay for an image twice.
--
-- An entry: { image = the input as given, interface = "advanced" or
-- "handwriting", outcome = "result" or "error", billed = true, false or
-- null (unknown), kind, request_id, text, lines, status, attempts, code,
-- msg, retryable }. A later entry for the same image and interface
-- replaces an earlier one (an unknown outcome retried, say). An error that
-- was not billed (billed false: a refusal, an image the vendor could not
-- read, one withdrawn before it was sent) stands for no outcome: a rerun
-- sends the image again, which cannot bill it twice. aliocr --journal writes an error of kind "sent" (billed
-- unknown) before it hands an image to the client, then the outcome over it:
-- an image the tool was killed with is journaled as unknown.
--
-- Crash safety: the file is opened in append mode and each entry is one
-- write of one line, flushed at once (file:write, then file:flush). Plain
-- Lua has no fsync: a flushed line is in the kernel, so it survives the
-- process being killed (SIGKILL), but not necessarily a power cut or a
-- crash of the system. A crash can leave at most a torn last line (one
-- without its final newline, or that does not parse): reading ignores it,
-- and `open` cuts it away before anything is appended. A bad line anywhere
-- else is not a crash's doing: `open` refuses the journal, naming the line.
--
-- One run per journal at a time: two runs appending to one journal would
-- each send what the other has not journaled yet, and the repair of a torn
-- line (a new file renamed over the old one, which keeps neither a symlink
-- nor the file's mode) would leave the other run writing to a file no
-- longer there. A journal must be a regular file.
-- @module aliocr.journal
local cjson = require("cjson")
local core = require("aliocr.core")

local M = {}

local Journal = {}
Journal.__index = Journal

local function key(image, interface) return interface .. "\0" .. image end

-- What entry `e` says: "done" (billed: a result, or a billed error such as
-- an unusable 2xx answer), "unknown", or nil (not billed for sure: a
-- failure that costs nothing to try again, such as a quota refusal, an
-- image the vendor could not read, or an image never sent).
local function state_of(e)
  if e.outcome == "result" or e.billed == true then return "done" end
  if e.billed == false then return nil end
  return "unknown"
end

-- Whether `e` (a decoded line) is an entry.
local function is_entry(e)
  return type(e) == "table" and type(e.image) == "string" and
    (e.interface == "advanced" or e.interface == "handwriting") and
    (e.outcome == "result" or e.outcome == "error")
end

-- JSON null (cjson.null) as nil, at every depth.
local function without_nulls(v)
  if type(v) ~= "table" then return v end
  for k, x in pairs(v) do
    if x == cjson.null then v[k] = nil else without_nulls(x) end
  end
  return v
end

local function read_file(path)
  -- Only a regular file (reading /dev/zero or a FIFO would never end).
  local kind = core.stat(path)
  if kind and kind ~= "file" then return nil, path .. " is a " .. kind .. ", not a regular file" end
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text or ""
end

-- Replaces the file at `path` with `text`, through a file beside it renamed
-- over it (a crash in between leaves the old journal, never half a one).
local function rewrite(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:flush() end
  f:close()
  if not ok then
    os.remove(tmp)
    return nil, werr
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

--- Reads the journal text `text` (the contents of a journal file). Returns
-- the entries (a list, in file order), the length of the part that is
-- whole (the bytes before a torn last line; all of it when none) and
-- whether there was a torn last line; or nil, the number of the first bad
-- line (one that is not the last) and why.
function M.parse(text)
  local entries, good, n, pos = {}, 0, 0, 1
  local len = #text
  while pos <= len do
    n = n + 1
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or len + 1) - 1)
    -- No final newline: torn, whether it parses or not.
    if nl == nil then return entries, good, true end
    local ok, e = pcall(cjson.decode, line)
    if ok then e = without_nulls(e) end
    if not ok or not is_entry(e) then
      if nl == len then return entries, good, true end
      return nil, n, ok and "not a journal entry" or "not JSON"
    end
    entries[#entries + 1] = e
    good = nl
    pos = nl + 1
  end
  return entries, good, false
end

--- Opens the journal at `path`, creating it if there is none. Returns the
-- journal, or nil and a message ("PATH:LINE: ..." for a bad line that is
-- not the last; the system's message when the file cannot be read or written).
function M.open(path)
  local text, why = read_file(path)
  if why then return nil, why end
  local entries = {}
  if text then
    local list, good, torn = M.parse(text)
    if not list then
      return nil, string.format("%s:%d: %s: the journal is damaged before its last line", path, good, torn)
    end
    entries = list
    if torn then
      local ok, err = rewrite(path, text:sub(1, good))
      if not ok then return nil, path .. ": " .. tostring(err) end
    end
  end
  local f, err = io.open(path, "ab")
  if not f then return nil, err end
  local self = setmetatable({ path = path, file = f, final = {}, torn = false }, Journal)
  for _, e in ipairs(entries) do self.final[key(e.image, e.interface)] = e end
  return self
end

--- The entry that stands for `image` on `interface` (the last one), or nil.
function Journal:entry(image, interface) return self.final[key(image, interface)] end

--- What the journal says of `image` on `interface`: "done" (a result, or a
-- billed error), "unknown" (an error whose billing is unknown: the request
-- may have been billed), or nil (not in it, or an error that was not billed:
-- a rerun tries it again for nothing).
function Journal:state(image, interface)
  local e = self.final[key(image, interface)]
  if not e then return nil end
  return state_of(e)
end

--- Appends `entry` (see above; nil fields are written as null) as one line,
-- flushed. Returns true, or nil and the system's message.
function Journal:append(entry)
  assert(is_entry(entry), "aliocr: journal entry needs image, interface and outcome")
  local fields = {}
  for k, v in pairs(entry) do fields[k] = v end
  if fields.billed == nil then fields.billed = cjson.null end
  local line = cjson.encode(fields)
  local ok, err = self.file:write(line, "\n")
  if ok then ok, err = self.file:flush() end
  if not ok then return nil, err end
  local stored = {}
  for k, v in pairs(entry) do stored[k] = v end
  self.final[key(entry.image, entry.interface)] = stored
  return true
end

--- Counts of the images the journal holds (by their last entries; not
-- those not sent after all): done, billed (of those whose last entry says
-- billed), unknown, all.
function Journal:counts()
  local done, billed, unknown, all = 0, 0, 0, 0
  for _, e in pairs(self.final) do
    local state = state_of(e)
    if state then all = all + 1 end
    if state == "done" then done = done + 1 elseif state == "unknown" then unknown = unknown + 1 end
    if e.billed == true then billed = billed + 1 end
  end
  return { done = done, billed = billed, unknown = unknown, all = all }
end

--- Closes the file.
function Journal:close()
  if self.file then
    self.file:close()
    self.file = nil
  end
end

return M
