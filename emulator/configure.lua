-- Reads the options of bin/aliocr-emulator, picks the ports, makes the test
-- certificates when HTTPS is asked for, and writes nginx's configuration and
-- the emulator's settings into the scratch directory the launcher made.
-- Runs under lua5.4 with lua-argparse and LuaSocket; the launcher runs nginx.
-- Its parts are in configure/: options (the command line and its checks),
-- probes (what the machine has), tls (the test CA), nginx_conf (the
-- template of nginx.conf), template (its named placeholders), files.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local files = require("configure.files")
local nginx_conf = require("configure.nginx_conf")
local options = require("configure.options")
local probes = require("configure.probes")
local tls_files = require("configure.tls")

local function fail(msg)
  io.stderr:write("aliocr-emulator: ", msg, "\n")
  os.exit(2)
end

-- A value, or the way out with its message.
local function must(v, msg)
  if v == nil then fail(msg) end
  return v
end

local args = options.parse(arg)
local conf = must(options.settings(args, os.getenv))
local scratch, host, url_host, settings = conf.scratch, conf.host, conf.url_host, conf.settings

-- Tesseract: found on PATH with every language --lang names. The backend
-- can then also be switched on at run time (POST /settings).
if not args.lang:match("^[%w_]+[%w_+]*$") then fail("--lang takes names like chi_sim+eng") end
local tesseract, no_tesseract = probes.tesseract(args.lang)
if settings.backend == "tesseract" then
  if not tesseract then fail(no_tesseract .. (args.backend and "" or "; or use --backend canned")) end
  if args.no_fetch then fail("--no-fetch leaves the tesseract backend nothing to read: use --backend canned") end
end
local threads = probes.cpus()
if tesseract then
  settings.ocr = { command = tesseract, lang = args.lang, tmp = scratch .. "/tmp/ocr", threads = threads }
end

local images = must(probes.images(args.images or (here .. "/images")))
local modules = os.getenv("ALIOCR_NGINX_MODULES") or "/usr/lib/nginx/modules"
must(probes.nginx_modules(modules))

-- Ports: 0 means any free port.
local wanted = {
  port = must(options.integer("port", args.port, 0, 65535)),
  https_port = args.https_port and must(options.integer("https-port", args.https_port, 0, 65535)) or nil,
}
wanted.control_port = must(options.integer("control-port", args.control_port, 0, 65535))
local oss = conf.oss
if oss then
  wanted.oss_port = must(options.integer("oss-port", args.oss_port, 0, 65535))
  if args.oss_https_port then
    wanted.oss_https_port = must(options.integer("oss-https-port", args.oss_https_port, 0, 65535))
  end
end
local ports, chosen_any = probes.ports(host, wanted)
local port, https_port, control_port = ports.port, ports.https_port, ports.control_port

local tls
if https_port or ports.oss_https_port then
  tls = must(tls_files.ensure(args.tls_dir or (scratch .. "/tls"), host))
end

-- Files ---------------------------------------------------------------------------

must(files.run("mkdir -p " .. files.quote(scratch .. "/logs") .. " " .. files.quote(scratch .. "/tmp/ocr")))
if oss then
  -- Each bucket's objects are files in a folder of its own.
  oss.dir = scratch .. "/oss"
  for name in pairs(oss.buckets) do must(files.run("mkdir -p " .. files.quote(oss.dir .. "/" .. name))) end
end
must(files.write(scratch .. "/settings.lua", "return " .. files.serialize(settings) .. "\n", "600"))

must(files.write(scratch .. "/nginx.conf", nginx_conf.render({
  scratch = scratch, settings_file = scratch .. "/settings.lua", lua_dir = here .. "/lua", modules = modules,
  images = images, url_host = url_host, port = port, control_port = control_port, workers = conf.workers,
  threads = threads, max_body = settings.max_body, is_root = probes.is_root(), verbose = args.verbose,
  tls = tls, https_port = https_port, http2 = args.http2,
  oss_port = oss and ports.oss_port, oss_https_port = oss and ports.oss_https_port,
  oss_max_body = oss and oss.max_body,
})))

local base = "http://" .. url_host .. ":" .. port
local info = {
  "endpoint " .. base,
  "advanced " .. base .. settings.paths.advanced,
  "handwriting " .. base .. settings.paths.handwriting,
}
if https_port then info[#info + 1] = "https https://" .. url_host .. ":" .. https_port end
if tls then info[#info + 1] = "ca-file " .. tls.ca end
info[#info + 1] = "control http://" .. url_host .. ":" .. control_port
info[#info + 1] = "images " .. base .. "/images/"
if oss then
  info[#info + 1] = "oss http://" .. url_host .. ":" .. ports.oss_port
  if ports.oss_https_port then info[#info + 1] = "oss-https https://" .. url_host .. ":" .. ports.oss_https_port end
  info[#info + 1] = "oss-region " .. oss.region
  local names = {}
  for name in pairs(oss.buckets) do names[#names + 1] = name end
  table.sort(names)
  info[#info + 1] = "oss-buckets " .. table.concat(names, ",")
end
must(files.write(scratch .. "/info", table.concat(info, "\n") .. "\n"))
must(files.write(scratch .. "/control-url", "http://" .. url_host .. ":" .. control_port .. "\n"))
if chosen_any then must(files.write(scratch .. "/ports-chosen", "")) end
