-- What the machine the emulator runs on has: Tesseract and its languages,
-- the CPUs, nginx's Lua module, the images directory, whether we are root,
-- and free ports. Each answers a value, or nil and what is missing.
local socket = require("socket")
local files = require("configure.files")

local M = {}

--- Tesseract, found on PATH with every language `lang` names ("chi_sim+eng"):
-- the command, or nil and what to install.
function M.tesseract(lang)
  local p = io.popen("command -v tesseract 2>/dev/null")
  local command = p:read("*l")
  p:close()
  if not command or command == "" then
    return nil, "tesseract is not installed: install Debian's tesseract-ocr (scripts/bootstrap does)"
  end
  p = io.popen("tesseract --list-langs 2>/dev/null")
  local have = {}
  for l in p:lines() do have[l] = true end
  p:close()
  for l in lang:gmatch("[^+]+") do
    if not have[l] then
      return nil, "Tesseract has no '" .. l .. "' data: install tesseract-ocr-" ..
        l:gsub("_", "-"):lower() .. " (scripts/bootstrap installs chi-sim and eng)"
    end
  end
  return command
end

--- The CPUs, from 1 to 16 (one image at a time per CPU).
function M.cpus()
  local p = io.popen("nproc 2>/dev/null")
  local n = tonumber(p and p:read("*l") or "")
  if p then p:close() end
  return math.max(1, math.min(n or 1, 16))
end

--- The images directory `dir` (without trailing slashes), absolute: nginx
-- reads a relative path from its own prefix (the scratch directory), so it
-- is made absolute from where we were started. Nil and the message when
-- there is no such directory.
function M.images(dir)
  dir = dir:gsub("/+$", "")
  if not files.exists(dir .. "/.") then return nil, "--images: no directory " .. dir end
  if dir:sub(1, 1) ~= "/" then
    local p = io.popen("realpath -- " .. files.quote(dir))
    dir = p:read("*l") or dir
    p:close()
  end
  return dir
end

--- nginx's modules directory `dir`, when it has the Lua module and NDK:
-- true, or nil and what to install.
function M.nginx_modules(dir)
  for _, m in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
    if not files.exists(dir .. "/" .. m) then
      return nil, dir .. "/" .. m .. " is missing: install Debian's libnginx-mod-http-lua " ..
        "(scripts/bootstrap does)"
    end
  end
  return true
end

--- Whether we run as root (nginx then needs `user root;`).
function M.is_root()
  return io.popen("id -u"):read("*l") == "0"
end

--- The ports `wanted` on `host`: { port, https_port, control_port, oss_port,
-- oss_https_port } (all but port and control_port may be absent), each 0
-- replaced by a free one the kernel
-- picked; and whether any was picked. All sockets stay open until every
-- port is chosen, so two listeners never get the same one.
function M.ports(host, wanted)
  local held, ports, chosen_any = {}, {}, false
  for _, name in ipairs({ "port", "https_port", "control_port", "oss_port", "oss_https_port" }) do
    local n = wanted[name]
    if n == 0 then
      local s = assert(socket.bind(host, 0))
      held[#held + 1] = s
      chosen_any = true
      local _, port = s:getsockname()
      n = math.tointeger(tonumber(port))
    end
    ports[name] = n
  end
  for _, s in ipairs(held) do s:close() end
  return ports, chosen_any
end

return M
