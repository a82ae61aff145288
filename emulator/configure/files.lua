-- The files and commands of the emulator's configure step: shell quoting,
-- running a command, writing a file, and a Lua value as Lua source (the
-- settings file nginx reads at start).
local M = {}

--- `s` quoted for sh.
function M.quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- Runs the shell command `cmd`, its output discarded: true, or nil and
-- "command failed: CMD".
function M.run(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if not ok then return nil, "command failed: " .. cmd end
  return true
end

--- Whether `path` can be opened for reading (a directory: "DIR/.").
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- Writes `text` to `path`, then sets its `mode` (chmod's) when given:
-- true, or nil and the message of the failed chmod.
function M.write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then return M.run("chmod " .. mode .. " " .. M.quote(path)) end
  return true
end

--- `v` (a table of strings, numbers, booleans and tables) as Lua source,
-- keys sorted.
function M.serialize(v, indent)
  indent = indent or ""
  if type(v) == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local out = { "{\n" }
    for _, k in ipairs(keys) do
      out[#out + 1] = string.format("%s  [%q] = %s,\n", indent, k, M.serialize(v[k], indent .. "  "))
    end
    out[#out + 1] = indent .. "}"
    return table.concat(out)
  elseif type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

return M
