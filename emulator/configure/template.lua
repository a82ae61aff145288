-- Text with named placeholders, ${name}, filled from a table: the emulator's
-- nginx.conf. A placeholder with no value is an error, and so is a value no
-- placeholder uses (a misspelt name). Values are strings, which go in as
-- they are (quote them for the file they go into first), or whole numbers. (An nginx
-- variable is written $name, never ${name}, in such a template.)
local M = {}

--- `text` with each ${name} replaced by `values[name]`.
function M.fill(text, values)
  local used = {}
  local out = text:gsub("%${([^}]*)}", function(name)
    local v = values[name]
    if type(v) ~= "string" and type(v) ~= "number" then
      error("template: no value for ${" .. name .. "}", 0)
    end
    used[name] = true
    if type(v) == "number" then return string.format("%d", v) end
    return v
  end)
  local unused = {}
  for name in pairs(values) do
    if not used[name] then unused[#unused + 1] = name end
  end
  if #unused > 0 then
    table.sort(unused)
    error("template: no placeholder for " .. table.concat(unused, ", "), 2)
  end
  return out
end

return M
