-- The image URLs of a run of bin/aliocr, each with where it came from
-- ("argument N", "FILE:LINE", "stdin:LINE"): from the arguments, from
-- --file, or from stdin when there are neither and stdin is not a terminal.
local M = {}

-- The URLs of the lines of `f` added to `list`, numbered as in the file
-- (blank and comment lines counted); `name` names it in the origins, `what`
-- in a read error. Returns true, or nil and what went wrong (as `collect`).
local function read_lines(f, name, what, list, sys)
  local n = 0
  while true do
    local line, err = f:read("*l")
    if line == nil then
      if err == nil then return true end -- the end
      -- A read that SIGINT interrupted fails too (no SA_RESTART).
      if sys.interrupted() then return nil, "interrupted" end
      return nil, "usage", "cannot read " .. what .. ": " .. err
    end
    n = n + 1
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" and line:sub(1, 1) ~= "#" then list:add(line, name .. ":" .. n) end
  end
end

--- The image URLs that the options `args` (aliocr.cli.options') name,
-- reading `sys.stdin` and files as needed. Returns the list of URLs and the
-- list of their origins; or nil and "usage" with the message; or nil and
-- "interrupted" when SIGINT stopped a read.
function M.collect(args, sys)
  local list = { urls = {}, origins = {} }
  function list:add(url, origin)
    self.urls[#self.urls + 1] = url
    self.origins[#self.urls] = origin
  end
  for n, u in ipairs(args.urls) do list:add(u, "argument " .. n) end
  local ok, why, msg = true, nil, nil
  if args.file then
    if args.file == "-" then
      ok, why, msg = read_lines(sys.stdin, "stdin", "stdin", list, sys)
    else
      local f, err = io.open(args.file, "r")
      if not f then return nil, "usage", "cannot read --file: " .. err end
      ok, why, msg = read_lines(f, args.file, "--file: " .. args.file, list, sys)
      f:close()
    end
  elseif #args.urls == 0 then
    if sys.isatty(0) then return nil, "usage", "no image URLs: give them as arguments, with --file, or on stdin" end
    ok, why, msg = read_lines(sys.stdin, "stdin", "stdin", list, sys)
  end
  if not ok then return nil, why, msg end
  if #list.urls == 0 then return nil, "usage", "no image URLs" end
  return list.urls, list.origins
end

return M
