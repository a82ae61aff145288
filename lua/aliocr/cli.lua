-- The command line tool, bin/aliocr, as a module: `main(argv[, sys])` runs
-- it and returns its exit status (bin/aliocr is a shim that exits with it).
-- What it does is its --help (aliocr.cli.options) and docs/cli.md. Its parts: aliocr.cli.options (the command line),
-- aliocr.cli.inputs (where image URLs come from), aliocr.cli.run (sending
-- and stopping), aliocr.cli.output (the formats), aliocr.cli.progress (the
-- bar), aliocr.cli.codes (the exit statuses).
--
-- `sys` lets a caller in the same process stand in for the system; each
-- field left out is the real one:
--   stdout, stderr  files (write, flush; stdout's seek, when it has one, finds a closed stdout)
--   stdin           a file the URLs may be read from (read("*l"))
--   getenv          the environment the tool reads (os.getenv): the
--                   interface URL it looks for before anything is sent.
--                   aliocr.new reads the credentials and the URLs with
--                   os.getenv itself: keep the two consistent.
--   isatty          isatty(fd), as aliocr.core's: is stdin (0) or stderr (2) a terminal
--   catch_interrupts, interrupted  aliocr.core's: SIGINT sets a flag the tool reads
local aliocr = require("aliocr")
local core = require("aliocr.core")
local codes = require("aliocr.cli.codes")
local journals = require("aliocr.journal")
local inputs = require("aliocr.cli.inputs")
local options = require("aliocr.cli.options")
local output = require("aliocr.cli.output")
local progress = require("aliocr.cli.progress")
local run = require("aliocr.cli.run")

local M = {}

-- `sys` with the real system in every field left out.
local function system(sys)
  sys = sys or {}
  return {
    stdout = sys.stdout or io.stdout,
    stderr = sys.stderr or io.stderr,
    stdin = sys.stdin or io.stdin,
    getenv = sys.getenv or os.getenv,
    isatty = sys.isatty or core.isatty,
    catch_interrupts = sys.catch_interrupts or core.catch_interrupts,
    interrupted = sys.interrupted or core.interrupted,
  }
end

local function usage_error(sys, msg)
  sys.stderr:write("aliocr: ", msg, "\n", "Try 'aliocr --help'.\n")
  return codes.USAGE
end

local function interrupted_before_sending(sys)
  sys.stderr:write("aliocr: interrupted: nothing was sent\n")
  return codes.INTERRUPTED
end

-- A client with `opts`: the client, or nil and the exit status once the
-- error is on stderr (credentials from the environment: 3; else a usage error).
local function new_client(opts, sys)
  local ok, client = pcall(aliocr.new, opts)
  if ok then return client end
  local msg = tostring(client):gsub("^aliocr: ", "")
  if msg:find("^no credentials") then
    sys.stderr:write("aliocr: no credentials: set ALIOCR_APPCODE, or ALIOCR_APP_KEY and ALIOCR_APP_SECRET\n")
    return nil, codes.ACCOUNT
  elseif msg:find("app_key", 1, true) or msg:find("app_secret", 1, true) or msg:find("appcode", 1, true) then
    sys.stderr:write("aliocr: ", msg, " (from the environment)\n")
    return nil, codes.ACCOUNT
  end
  return nil, usage_error(sys, msg)
end

-- Whether the interface `api` has a URL, as the client looks for it: nil
-- and the advice (which names this tool's options and variables) if not.
local function interface_url(args, api, sys)
  local function given(v) return v ~= nil and v ~= "" end
  local env_url = "ALIOCR_" .. api:upper() .. "_URL"
  if args[api .. "_url"] or args.endpoint or given(sys.getenv(env_url)) or given(sys.getenv("ALIOCR_ENDPOINT")) then
    return true
  end
  return nil, string.format("no URL for interface '%s': give --endpoint or --%s-url, or set ALIOCR_ENDPOINT or %s",
    api, api, env_url)
end

-- Checks every image URL before anything is sent: nil, or the usage
-- message naming where the first bad one came from. submit checks a call
-- and sends nothing until a poll: this client is never polled, and each of
-- its jobs is cancelled at once.
local function check_urls(checker, kind, urls, origins, call_opts)
  for i, u in ipairs(urls) do
    if type(u) == "table" and not checker._store then
      return origins[i] .. ": " .. u.file .. " is a local file: reading it needs OSS storage: set " ..
        "ALIOCR_OSS_ENDPOINT, ALIOCR_OSS_BUCKET, ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET " ..
        "(and ALIOCR_OSS_REGION unless the endpoint names it)"
    end
    local good, job = pcall(checker.submit, checker, kind, u, call_opts)
    if not good then return origins[i] .. ": " .. (tostring(job):gsub("^.-aliocr: ", "")) end
    job:cancel()
  end
end

--- Runs the tool with the command line `argv` (a list of strings, as Lua's
-- `arg`) and `sys` (see above). Returns the exit status: 0 every image was
-- read, 1 some failed (or the results could not be written), 2 usage
-- error, 3 credentials or quota, 130 interrupted.
function M.main(argv, sys)
  sys = system(sys)
  -- From now on SIGINT (Ctrl-C) only sets a flag, which the tool reads where
  -- it can stop cleanly (aliocr.cli.run), instead of Lua's own handler
  -- raising an error wherever the program happens to be.
  sys.catch_interrupts()

  local args, msg = options.parse(argv)
  if not args then return usage_error(sys, msg) end
  if args.help then
    sys.stdout:write(args.help, "\n")
    sys.stdout:flush()
    return codes.OK
  end

  -- Before anything is sent, and before any file is opened: a closed stdout
  -- would lose every result, and the descriptor would be taken by the next
  -- file or connection opened, which the results would then go to.
  local out = sys.stdout
  if out.seek then
    local _, err, code = out:seek("cur")
    if code == 9 then -- EBADF: not open (a pipe or a terminal gives ESPIPE)
      sys.stderr:write("aliocr: cannot write to stdout: ", err, ": nothing was sent\n")
      return codes.FAILED
    end
  end

  local urls, origins, why = inputs.collect(args, sys)
  if not urls then
    if origins == "interrupted" then return interrupted_before_sending(sys) end
    return usage_error(sys, why)
  end
  if sys.interrupted() then return interrupted_before_sending(sys) end

  local kind = args.handwriting and "handwriting" or "recognize"
  local api = args.handwriting and "handwriting" or "advanced"
  local client_opts = {
    concurrency = args.concurrency, timeout = args.timeout, retries = args.retries,
    budget = args.max_billed and { limit = args.max_billed } or nil,
    rate_limit = (args.qps or args.adaptive_rate) and { qps = args.qps, adaptive = args.adaptive_rate } or nil,
    ca_file = args.ca_file, tls_verify = not args.insecure,
  }
  if args.endpoint then client_opts.endpoint = args.endpoint end
  if args.advanced_url or args.handwriting_url then
    client_opts.urls = { advanced = args.advanced_url, handwriting = args.handwriting_url }
  end
  local client, status = new_client(client_opts, sys)
  if not client then return status end

  local has_url, advice = interface_url(args, api, sys)
  if not has_url then
    client:close()
    return usage_error(sys, advice)
  end

  local call_opts = { show = args.show }
  local checker
  checker, status = new_client(client_opts, sys)
  if not checker then
    client:close()
    return status
  end
  -- An input with a scheme is a URL (checked as one); any other, a local
  -- file, read through the client's OSS storage.
  local images = {}
  for i, u in ipairs(urls) do images[i] = u:match("^%a[%w+.-]*://") and u or { file = u } end
  local bad = check_urls(checker, kind, images, origins, call_opts)
  checker:close()
  if bad then
    client:close()
    return usage_error(sys, bad)
  end
  if sys.interrupted() then
    client:close()
    return interrupted_before_sending(sys)
  end

  -- The journal last: a damaged one (a bad line before its last) is a usage
  -- error, and nothing has been sent.
  local journal
  if args.journal then
    journal, msg = journals.open(args.journal)
    if not journal then
      client:close()
      return usage_error(sys, "journal " .. msg)
    end
  end

  local shown = args.progress or (not args.no_progress and #urls > 1 and sys.isatty(2))
  return run.run(client, urls, images, {
    kind = kind, call_opts = call_opts, concurrency = args.concurrency, sys = sys,
    printer = output.new(args.output, out, sys.stderr, #urls > 1),
    bar = progress.new(sys.stderr, #urls, shown),
    journal = journal, interface = api, retry_unknown = args.retry_unknown,
  })
end

return M
