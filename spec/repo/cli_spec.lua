-- bin/aliocr, the command line tool, run as a child process against the
-- emulator in an environment of its own (env -i: the developer's variables
-- cannot leak in): its usage and help, where image URLs come from, the text,
-- json and tsv outputs, input order under concurrency, exit statuses,
-- credentials (from the environment only, never printed), interface URLs
-- from options and the environment, and the progress bar (inside a
-- pseudo-terminal made by util-linux script).
local cjson = require("cjson")
local socket = require("socket")
local emulator = require("helpers.emulator")
local cli = require("helpers.cli")
local sh = require("helpers.sh")
local util = require("helpers.util")
local unpack = table.unpack or unpack -- Lua 5.1 and LuaJIT have only the global

local q, read_all, write_all = sh.q, sh.read_all, sh.write_all

local SECRET = "secret-XYZ"

-- What the emulator's canned backend answers (the API guide's examples).
local TEXT = "冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"
local SHOW1 = { "冰心散文精选", "*****", "在草地上，和着最柔媚的琴声跳舞。到了酣畅处，自己觉得是个羽" }
local HANDWRITING = {
  { words = "拇指云软件", position = { top = 41, left = 65, width = 236, height = 78 } },
  { words = "作品著作权", position = { top = 141, left = 68, width = 258, height = 76 } },
  { words = "聚合版权服务专家", position = { top = 231, left = 59, width = 417, height = 90 } },
  { words = "400-181-0600", position = { top = 331, left = 76, width = 310, height = 86 } },
}
local TSV_HEADER = "image\tline\tleft\ttop\twidth\theight\twords\n"
local USAGE_TAIL = "\nTry 'aliocr %-%-help'%.\n$"

-- One scratch directory for the whole file (under spec/run's TMPDIR, which
-- it checks for leftovers): the tool's stdin, stdout and stderr files.
local scratch
local serial = 0
local function scratch_file(suffix)
  serial = serial + 1
  return scratch .. "/" .. serial .. suffix
end

--- The shell command that runs bin/aliocr with `args` in exactly the
-- environment `env` (helpers.cli's), under `timeout`: a tool that hangs
-- fails its test (status 124) instead of the run.
local function command(env, args) return "timeout -k 5 60 " .. cli.command(env, args) end

--- The default environment for an emulator: APPCODE demo and its endpoint,
-- with `extra` on top (false removes a variable).
local function env_for(emu, extra)
  local env = { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

--- Runs the tool; `stdin` is a string fed to it (default: /dev/null, which
-- is not a terminal). Returns { out, err, status, elapsed }.
local function run(env, args, stdin)
  local input, out, err = "/dev/null", scratch_file(".out"), scratch_file(".err")
  if stdin then
    input = scratch_file(".in")
    write_all(input, stdin)
  end
  local started = socket.gettime()
  local status = sh.capture(string.format("%s <%s >%s 2>%s; echo $?", command(env, args), q(input), q(out), q(err)))
  local r = { out = read_all(out), err = read_all(err), status = tonumber(status:match("%d+")),
              elapsed = socket.gettime() - started }
  os.remove(out)
  os.remove(err)
  if stdin then os.remove(input) end
  return r
end

--- Runs the tool inside a pseudo-terminal: its stdout goes to a file, so
-- that only its stderr reaches the terminal. Returns { tty, out, status }.
local function run_tty(env, args)
  local out = scratch_file(".out")
  local inner = command(env, args) .. " >" .. q(out)
  local raw = sh.capture("script -qec " .. q(inner) .. " /dev/null </dev/null; echo \"exit:$?\"")
  local r = { status = tonumber(raw:match("exit:(%d+)\n$")), tty = (raw:gsub("exit:%d+\n$", "")), out = read_all(out) }
  os.remove(out)
  return r
end

--- The JSON lines of an output, decoded.
local function json_lines(out)
  local list = {}
  for line in out:gmatch("([^\n]*)\n") do list[#list + 1] = cjson.decode(line) end
  return list
end

--- The keys of a table, sorted.
local function keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

--- The rows of a tsv output (the header included), each a list of fields.
local function tsv_rows(out)
  local rows = {}
  for line in out:gmatch("([^\n]*)\n") do
    local row = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do row[#row + 1] = field end
    rows[#rows + 1] = row
  end
  return rows
end

--- The image URLs of the emulator's request log, in the order it logged them.
local function logged_urls(emu)
  local list = {}
  for _, e in ipairs(emu:requests()) do list[#list + 1] = e.params.url end
  return list
end

--- Asserts the emulator was sent nothing at all.
local function assert_nothing_sent(emu)
  assert.same({}, emu:requests())
  assert.equal(0, emu:ledger().total.requests)
  assert.equal(0, emu:connections().accepted)
end

--- The progress bars in what reached a terminal: { fill, done, total, rest }.
local function bars(tty)
  local list = {}
  for fill, done, total, rest in tty:gmatch("\r%[([#.]*)%] (%d+)/(%d+)([^\r]*)") do
    list[#list + 1] = { fill = fill, done = tonumber(done), total = tonumber(total), rest = rest }
  end
  return list
end

--- Asserts `tty` holds well-formed bars counting up to total/total, and that
-- the line is cleared at the end.
local function assert_bars(tty, total)
  local list = bars(tty)
  assert.truthy(#list >= 2, "no progress bars in: " .. string.format("%q", tty))
  local last = -1
  for _, b in ipairs(list) do
    assert.equal(total, b.total)
    assert.equal(30, #b.fill)
    assert.equal(math.floor(30 * b.done / total), select(2, b.fill:gsub("#", "")))
    assert.truthy(b.done >= last, "counts never go down")
    last = b.done
  end
  assert.equal(0, list[1].done)
  assert.equal(total, list[#list].done)
  assert.truthy(tty:find("\r\27%[K$"), "the line is cleared at the end: " .. string.format("%q", tty))
  return list
end

describe("aliocr command line", function()
  setup(function() scratch = sh.tmpdir() end)
  teardown(function()
    local left = sh.capture("ls -A " .. q(scratch))
    os.execute("rm -rf " .. q(scratch))
    assert.equal("", left, "the specs' own scratch files were removed")
  end)

  describe("usage", function()
    local emu
    setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo" }) end)
    teardown(function() util.stop_clean(emu) end)
    before_each(function() emu:reset() end)

    it("documents every option, the inputs, credentials, outputs and exit statuses with --help, exit 0", function()
      local r = run(env_for(emu), { "--help" })
      assert.equal(0, r.status)
      assert.equal("", r.err)
      local help = r.out
      for _, opt in ipairs({ "-f", "--file", "--handwriting", "--show", "-o", "--output", "-c", "--concurrency",
                             "--endpoint", "--advanced-url", "--handwriting-url", "--timeout", "--retries",
                             "--ca-file", "--insecure", "--progress", "--no-progress", "-h", "--help" }) do
        assert.truthy(help:find("%s" .. opt:gsub("%-", "%%-") .. "[%s,]"), "help lacks " .. opt)
      end
      -- Inputs.
      assert.truthy(help:find("from --file", 1, true))
      assert.truthy(help:find("(- for stdin)", 1, true))
      assert.truthy(help:find("stdin is not a terminal", 1, true))
      assert.truthy(help:find("empty lines and lines\nstarting with # are skipped", 1, true))
      assert.truthy(help:find("input order", 1, true))
      -- Credentials: the environment only, and no option takes them.
      assert.truthy(help:find("Credentials come from the environment only", 1, true))
      for _, name in ipairs({ "ALIOCR_APPCODE", "ALIOCR_APP_KEY", "ALIOCR_APP_SECRET", "ALIOCR_ENDPOINT",
                              "ALIOCR_ADVANCED_URL", "ALIOCR_HANDWRITING_URL" }) do
        assert.truthy(help:find(name, 1, true), "help lacks " .. name)
      end
      assert.falsy(help:lower():find("%-%-app[%-_]?code"))
      assert.falsy(help:lower():find("%-%-app[%-_]?key"))
      assert.falsy(help:lower():find("%-%-app[%-_]?secret"))
      -- Outputs.
      assert.truthy(help:find("{text,json,tsv}", 1, true))
      assert.truthy(help:find('"==> URL <=="', 1, true))
      assert.truthy(help:find('{"url", "result"}', 1, true))
      assert.truthy(help:find('{"url", "error"}', 1, true))
      assert.truthy(help:find("image,\nline, left, top, width, height, words", 1, true))
      assert.truthy(help:find("Errors go to stderr in text and tsv", 1, true))
      -- Exit statuses.
      assert.truthy(help:find("Exit status: 0 every image was read; 1 some failed; 2 usage error;\n3 credentials " ..
        "or quota", 1, true))
      assert.truthy(help:find("1 also when the results cannot be\nwritten to stdout", 1, true))
      assert.truthy(help:find("\n130 interrupted", 1, true))
      -- The interrupt, and where a bad URL is said to come from.
      assert.truthy(help:find("Interrupt (SIGINT, Ctrl-C): nothing more is sent", 1, true))
      assert.truthy(help:find('"argument N"', 1, true))
      assert.truthy(help:find('"FILE:LINE"', 1, true))
      assert_nothing_sent(emu)
    end)

    it("refuses bad options, credentials on the command line and bad numbers: exit 2, stderr only, nothing sent",
      function()
        local image = emu.image
        local cases = {
          { { "--bogus", image }, "unknown option '%-%-bogus'" },
          { { "--appcode", SECRET, image }, "unknown option '%-%-appcode'" },
          { { "--appcode=" .. SECRET, image }, "unknown option '%-%-appcode'" },
          { { "--app-key", "key", image }, "unknown option '%-%-app%-key'" },
          { { "--app-secret", SECRET, image }, "unknown option '%-%-app%-secret'" },
          { { "-c", "0", image }, "%-%-concurrency must be a whole number >= 1, got '0'" },
          { { "-c", "1.5", image }, "%-%-concurrency must be a whole number >= 1, got '1.5'" },
          { { "--concurrency", "eight", image }, "%-%-concurrency must be a whole number >= 1, got 'eight'" },
          { { "--concurrency=-3", image }, "%-%-concurrency must be a whole number >= 1, got '%-3'" },
          { { "--timeout", "0", image }, "%-%-timeout must be a positive number, got '0'" },
          { { "--retries", "1.5", image }, "%-%-retries must be a whole number >= 0, got '1.5'" },
          { { "-o", "xml", image }, "argument for option '%-o' must be one of 'text', 'json', 'tsv'" },
          { { "--progress", "--no-progress", image }, "option '%-%-no%-progress' can not be used together" },
          { { "--file", scratch .. "/no-such-file" }, "cannot read %-%-file: .*No such file" },
        }
        for _, case in ipairs(cases) do
          local r = run(env_for(emu), case[1])
          local what = table.concat(case[1], " ")
          assert.equal(2, r.status, what)
          assert.equal("", r.out, what)
          assert.matches("^aliocr: " .. case[2] .. ".*" .. USAGE_TAIL, r.err, nil, what)
          assert.falsy(r.err:find(SECRET, 1, true), "the secret is not echoed: " .. what)
        end
        assert_nothing_sent(emu)
      end)

    it("exits 2 with no image URL: no arguments and nothing on stdin, or a file of comments", function()
      local r = run(env_for(emu), {}) -- stdin is /dev/null: not a terminal, and empty
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: no image URLs" .. USAGE_TAIL, r.err)
      r = run(env_for(emu), {}, "\n# only a comment\n   \n")
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: no image URLs" .. USAGE_TAIL, r.err)
      local file = scratch_file(".urls")
      write_all(file, "# nothing here\n\n")
      r = run(env_for(emu), { "--file", file })
      os.remove(file)
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: no image URLs" .. USAGE_TAIL, r.err)
      assert_nothing_sent(emu)
    end)

    it("exits 2 at once with no arguments when stdin is a terminal", function()
      -- Inside a pseudo-terminal; `timeout` in case the tool waits for input.
      local out = scratch_file(".out")
      local raw = sh.capture("timeout 10 script -qec " .. q(command(env_for(emu), {}) .. " >" .. q(out)) ..
        " /dev/null </dev/null; echo \"exit:$?\"")
      assert.equal("", read_all(out))
      os.remove(out)
      assert.matches("^aliocr: no image URLs: give them as arguments, with %-%-file, or on stdin\r?\n" ..
        "Try 'aliocr %-%-help'%.\r?\nexit:2\n$", raw)
      assert_nothing_sent(emu)
    end)

    it("refuses a huge --timeout as a usage error, before sending anything, and never crashes", function()
      -- 1e16 s would overflow the milliseconds the C engine passes libcurl:
      -- the client takes at most 1e6 s, and the tool says so.
      local r = run(env_for(emu), { "--timeout", "1e16", emu.image })
      assert.falsy(r.err:find("traceback", 1, true), r.err)
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.equal("aliocr: timeout must be at most 1000000\nTry 'aliocr --help'.\n", r.err)
      assert_nothing_sent(emu)
      -- The largest it takes still reads the image.
      r = run(env_for(emu), { "--timeout", "1000000", emu.image })
      assert.equal(0, r.status, r.err)
      assert.equal(TEXT .. "\n", r.out)
    end)

    it("exits 2 on a bad URL among many, naming where it came from, before sending anything", function()
      local args = {}
      for i = 1, 12 do args[i] = emu.image .. "?n=" .. i end
      args[7] = "ftp://127.0.0.1/images/sample.png"
      local r = run(env_for(emu), args)
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: argument 7: .*'ftp://127%.0%.0%.1/images/sample%.png'" .. USAGE_TAIL, r.err)
      -- The same from stdin, in json, after a comment line.
      r = run(env_for(emu), { "-o", "json" }, "# images\n" .. table.concat(args, "\n") .. "\n")
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: stdin:8: ", r.err)
      assert_nothing_sent(emu)
    end)

    it("exits 2 when no URL is configured for the interface", function()
      local r = run(env_for(emu, { ALIOCR_ENDPOINT = false }), { emu.image })
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: no URL for interface 'advanced': give %-%-endpoint or %-%-advanced%-url", r.err)
      r = run(env_for(emu, { ALIOCR_ENDPOINT = "ftp://127.0.0.1/" }), { emu.image })
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: ALIOCR_ENDPOINT must be an http:// or https:// URL", r.err)
      assert_nothing_sent(emu)
    end)
  end)

  describe("image URLs", function()
    local emu
    setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo" }) end)
    teardown(function() util.stop_clean(emu) end)
    before_each(function() emu:reset() end)

    local function urls_of(out)
      local list = {}
      for _, v in ipairs(json_lines(out)) do
        assert.is_table(v.result, cjson.encode(v))
        list[#list + 1] = v.url
      end
      return list
    end
    local function sorted(list)
      local copy = { unpack(list) }
      table.sort(copy)
      return copy
    end

    it("come from the arguments, in order", function()
      local urls = { emu.image .. "?n=3", emu.image .. "?n=1", emu.image .. "?n=2" }
      local r = run(env_for(emu), { "-o", "json", unpack(urls) })
      assert.equal(0, r.status, r.err)
      assert.equal("", r.err)
      assert.same(urls, urls_of(r.out))
      assert.same(sorted(urls), sorted(logged_urls(emu)))
    end)

    it("come from --file, skipping empty lines, # comments and surrounding blanks; arguments first", function()
      local file = scratch_file(".urls")
      write_all(file, "# images to read\n\n" .. emu.image .. "?n=2\n   \n  " .. emu.image .. "?n=3  \r\n" ..
        "   # an indented comment\n" .. emu.image .. "?n=4")
      -- stdin is not read when there is a --file.
      local r = run(env_for(emu), { "-o", "json", "-f", file, emu.image .. "?n=1" }, emu.image .. "?n=5\n")
      os.remove(file)
      assert.equal(0, r.status, r.err)
      local want = { emu.image .. "?n=1", emu.image .. "?n=2", emu.image .. "?n=3", emu.image .. "?n=4" }
      assert.same(want, urls_of(r.out))
      assert.same(want, sorted(logged_urls(emu)))
    end)

    it("come from stdin with --file -", function()
      local r = run(env_for(emu), { "-o", "json", "--file", "-" },
        "# from stdin\n" .. emu.image .. "?n=2\n\n" .. emu.image .. "?n=1\n")
      assert.equal(0, r.status, r.err)
      assert.same({ emu.image .. "?n=2", emu.image .. "?n=1" }, urls_of(r.out))
      assert.equal(2, #emu:requests())
    end)

    it("come from stdin when there are no arguments and no --file", function()
      local r = run(env_for(emu), { "-o", "json" },
        "\n#comment\n" .. emu.image .. "?n=9\n  # another\n\n" .. emu.image .. "?n=8\n" .. emu.image .. "?n=7")
      assert.equal(0, r.status, r.err)
      assert.same({ emu.image .. "?n=9", emu.image .. "?n=8", emu.image .. "?n=7" }, urls_of(r.out))
      assert.equal(3, #emu:requests())
    end)

    it("do not come from stdin when arguments are given", function()
      local r = run(env_for(emu), { "-o", "json", emu.image .. "?n=1" }, emu.image .. "?n=2\n")
      assert.equal(0, r.status, r.err)
      assert.same({ emu.image .. "?n=1" }, urls_of(r.out))
      assert.same({ emu.image .. "?n=1" }, logged_urls(emu))
    end)
  end)

  describe("output formats", function()
    local emu
    setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo" }) end)
    teardown(function() util.stop_clean(emu) end)
    before_each(function() emu:reset() end)

    it("text, one image: just its text", function()
      local r = run(env_for(emu), { emu.image })
      assert.equal(0, r.status)
      assert.equal("", r.err)
      assert.equal(TEXT .. "\n", r.out)
      local log = emu:requests()
      assert.equal(1, #log)
      assert.equal("/ocr/advanced", log[1].path)
      assert.equal("demo", log[1].credential)
      assert.is_nil(log[1].params.show)
    end)

    it("text, several images: each under '==> URL <==', in input order", function()
      local a, b, c = emu.image .. "?n=2", emu.image .. "?n=1", emu.image .. "?n=3"
      local r = run(env_for(emu), { a, b, c })
      assert.equal(0, r.status)
      assert.equal("", r.err)
      assert.equal("==> " .. a .. " <==\n" .. TEXT .. "\n\n==> " .. b .. " <==\n" .. TEXT .. "\n\n==> " .. c ..
        " <==\n" .. TEXT .. "\n", r.out)
    end)

    it("--show 1 gives the text as three lines", function()
      local r = run(env_for(emu), { "--show", "1", emu.image })
      assert.equal(0, r.status)
      assert.equal(table.concat(SHOW1, "\n") .. "\n", r.out)
      assert.equal("1", emu:requests()[1].params.show)
    end)

    it("--handwriting calls interface two", function()
      local r = run(env_for(emu), { "--handwriting", emu.image })
      assert.equal(0, r.status)
      local words = {}
      for i, l in ipairs(HANDWRITING) do words[i] = l.words end
      assert.equal(table.concat(words, "\n") .. "\n", r.out)
      local log = emu:requests()
      assert.equal(1, #log)
      assert.equal("/ocr/handwriting", log[1].path)
      assert.equal("handwriting", log[1].api)
    end)

    it("json: one object per line and image, in input order, with the whole result", function()
      local urls = { emu.image .. "?n=2", emu.image .. "?n=1" }
      local r = run(env_for(emu), { "-o", "json", unpack(urls) })
      assert.equal(0, r.status)
      assert.equal("", r.err)
      assert.equal(2, select(2, r.out:gsub("\n", "")), "one line per image")
      local ids = {}
      for _, e in ipairs(emu:requests()) do ids[e.params.url] = e.request_id end
      for i, v in ipairs(json_lines(r.out)) do
        assert.same({ "result", "url" }, keys(v))
        assert.equal(urls[i], v.url)
        assert.same({ "attempts", "billed", "lines", "request_id", "status", "text" }, keys(v.result))
        assert.equal(TEXT, v.result.text)
        assert.same({ { words = TEXT, position = cjson.null } }, v.result.lines) -- same keys on every line
        assert.equal(200, v.result.status)
        assert.is_true(v.result.billed)
        assert.equal(1, v.result.attempts)
        assert.equal(ids[urls[i]], v.result.request_id, "the answer to this very image")
      end
    end)

    it("json: lines with positions for --handwriting, and attempts counted across retries", function()
      emu:fault({ mode = "service_unavailable", times = 1 })
      local r = run(env_for(emu), { "-o", "json", "--handwriting", emu.image })
      assert.equal(0, r.status, r.err)
      local v = json_lines(r.out)[1]
      assert.same(HANDWRITING, v.result.lines)
      assert.equal(2, v.result.attempts)
      local log = emu:requests()
      assert.equal(2, #log)
      assert.equal(log[2].request_id, v.result.request_id)
    end)

    it("json: an error object for a failed image, with its kind, billing and request id", function()
      local missing = emu.images .. "missing.png"
      local r = run(env_for(emu), { "-o", "json", missing, emu.image })
      assert.equal(1, r.status)
      assert.equal("", r.err, "in json mode errors go into the JSON lines")
      local list = json_lines(r.out)
      assert.equal(2, #list)
      assert.same({ "error", "url" }, keys(list[1]))
      assert.equal(missing, list[1].url)
      local e = list[1].error
      for _, k in ipairs(keys(e)) do
        assert.truthy(({ kind = 1, msg = 1, status = 1, billed = 1, code = 1, request_id = 1, retryable = 1,
          attempts = 1 })[k], "unexpected field " .. k)
      end
      assert.equal("api", e.kind)
      assert.equal(666, e.status)
      assert.is_false(e.billed)
      assert.is_false(e.retryable)
      assert.equal(1, e.attempts)
      assert.matches("404", e.msg)
      local ids = {}
      for _, x in ipairs(emu:requests()) do ids[x.params.url] = x.request_id end
      assert.equal(ids[missing], e.request_id)
      assert.equal(emu.image, list[2].url)
      assert.equal(TEXT, list[2].result.text)
    end)

    it("json: the gateway's error code, and billing unknown as null", function()
      emu:settings({ errors = "vpc" })
      local r = run(env_for(emu, { ALIOCR_APPCODE = "wrong" }), { "-o", "json", emu.image })
      local e = json_lines(r.out)[1].error
      assert.equal("auth", e.kind)
      assert.equal("A401AC", e.code)
      assert.equal(401, e.status)
      emu:reset()
      emu:fault({ mode = "stall_headers", ms = 2000, ["then"] = "close" })
      r = run(env_for(emu), { "-o", "json", "--timeout", "0.3", "--retries", "0", emu.image })
      assert.equal(1, r.status)
      local raw = r.out:match("^[^\n]*")
      e = cjson.decode(raw).error
      assert.equal("timeout", e.kind)
      assert.equal(cjson.null, e.billed, "billed unknown is null: " .. raw)
    end)

    it("json: a result without lines has an empty array of lines", function()
      -- Debian's lua-cjson 2.1.0 writes an empty table as {}: the tool must
      -- still write a list.
      emu:fault({ mode = "respond", status = 200, content_type = "application/json",
                  body = '{"ok":1,"msg":"查询成功","data":[]}' })
      local r = run(env_for(emu), { "-o", "json", emu.image })
      assert.equal(0, r.status, r.err)
      assert.equal("", json_lines(r.out)[1].result.text)
      assert.truthy(r.out:find('"lines":[]', 1, true), "lines is a JSON array: " .. r.out)
    end)

    it("tsv: a header, then one row per line with the positions of interface two", function()
      local r = run(env_for(emu), { "-o", "tsv", "--handwriting", emu.image })
      assert.equal(0, r.status)
      assert.equal("", r.err)
      local want = TSV_HEADER
      for i, l in ipairs(HANDWRITING) do
        local p = l.position
        want = want .. table.concat({ emu.image, i, p.left, p.top, p.width, p.height, l.words }, "\t") .. "\n"
      end
      assert.equal(want, r.out)
    end)

    it("tsv: empty position fields without positions, one row per line, images in input order", function()
      local a, b = emu.image .. "?n=2", emu.image .. "?n=1"
      local r = run(env_for(emu), { "-o", "tsv", "--show", "1", a, b })
      assert.equal(0, r.status)
      local rows = tsv_rows(r.out)
      assert.same({ "image", "line", "left", "top", "width", "height", "words" }, rows[1])
      assert.equal(7, #rows)
      for i = 1, 6 do
        local n = (i - 1) % 3 + 1
        assert.same({ i <= 3 and a or b, tostring(n), "", "", "", "", SHOW1[n] }, rows[i + 1])
      end
      r = run(env_for(emu), { "-o", "tsv", emu.image })
      assert.equal(TSV_HEADER .. emu.image .. "\t1\t\t\t\t\t" .. TEXT .. "\n", r.out)
    end)

    it("tsv: escapes tabs, newlines, carriage returns and backslashes in the words", function()
      local body = cjson.encode({ ok = 1, msg = "ok", data = {
        { words = "a\tb" }, { words = "c\nd\\e\r" },
        { words = "plain", position = { top = 1, left = 2, width = 3, height = 4 } } } })
      emu:fault({ mode = "respond", status = 200, content_type = "application/json", body = body })
      local r = run(env_for(emu), { "-o", "tsv", emu.image })
      assert.equal(0, r.status, r.err)
      assert.equal(TSV_HEADER ..
        emu.image .. "\t1\t\t\t\t\ta\\tb\n" ..
        emu.image .. "\t2\t\t\t\t\tc\\nd\\\\e\\r\n" ..
        emu.image .. "\t3\t2\t1\t3\t4\tplain\n", r.out)
    end)
  end)

  describe("many images at once", function()
    local emu
    setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo", "--latency-ms", "100" }) end)
    teardown(function() util.stop_clean(emu) end)
    before_each(function() emu:reset() end)

    it("reads 100 images 8 at a time and prints every result in input order", function()
      -- One answer much later than the others, so that answers do not come
      -- back in input order.
      emu:fault({ mode = "latency", ms = 700, times = 1 })
      local urls = {}
      for i = 1, 100 do urls[i] = emu.image .. "?n=" .. i end
      local r = run(env_for(emu), { "-o", "json", "-c", "8" }, table.concat(urls, "\n") .. "\n")
      assert.equal(0, r.status, r.err)
      assert.equal("", r.err)
      local log = emu:requests()
      assert.equal(100, #log)
      local ids, answered = {}, {}
      for i, e in ipairs(log) do
        ids[e.params.url] = e.request_id
        answered[i] = e.params.url
      end
      assert.are_not.same(urls, answered, "the emulator answered out of input order")
      local list = json_lines(r.out)
      local printed = {}
      for i, v in ipairs(list) do
        printed[i] = v.url
        assert.equal(TEXT, v.result.text)
        assert.equal(ids[v.url], v.result.request_id)
      end
      assert.same(urls, printed)
      local ledger = emu:ledger()
      assert.equal(100, ledger.total.billed)
      assert.equal(100, ledger.total.requests)
      local accepted = emu:connections().accepted
      assert.truthy(accepted > 1 and accepted <= 8, "connections: " .. accepted)
      -- 100 answers of at least 100 ms: 10 s one at a time, ~1.5 s 8 at a time.
      assert.truthy(r.elapsed < 6, "took " .. r.elapsed .. " s")
    end)
  end)

  describe("exit status", function()
    local emu
    setup(function()
      emu = emulator.start({ "--port", "0", "--appcode", "demo", "--app-key", "key-1:secret-1" })
    end)
    teardown(function() util.stop_clean(emu) end)
    before_each(function() emu:reset() end)

    it("is 0 when every image was read", function()
      local r = run(env_for(emu), { emu.image, emu.image .. "?n=2" })
      assert.equal(0, r.status)
      assert.equal("", r.err)
    end)

    it("is 3 after refused credentials, and the images not sent by then are not sent", function()
      local urls = {}
      for i = 1, 20 do urls[i] = emu.image .. "?n=" .. i end
      local args = { "-o", "json", "-c", "2" }
      for _, u in ipairs(urls) do args[#args + 1] = u end
      local r = run(env_for(emu, { ALIOCR_APPCODE = "wrong-code" }), args)
      assert.equal(3, r.status)
      local sent = #emu:requests()
      -- The two under way, and not one more (issue 14, finding 7).
      assert.equal(2, sent)
      local lines = json_lines(r.out)
      assert.equal(20, #lines)
      local auth, cancelled = 0, 0
      for i, v in ipairs(lines) do
        assert.equal(urls[i], v.url)
        if v.error.kind == "auth" then auth = auth + 1 end
        if v.error.kind == "cancelled" then
          cancelled = cancelled + 1
          assert.is_false(v.error.billed)
          assert.equal(0, v.error.attempts)
        end
      end
      assert.equal(sent, auth)
      assert.equal(20 - sent, cancelled)
    end)

    it("prints no blank line before the first image printed when an earlier one failed", function()
      local missing = emu.images .. "missing.png"
      local b = emu.image .. "?n=2"
      local r = run(env_for(emu), { missing, b })
      assert.equal(1, r.status)
      assert.equal("==> " .. b .. " <==\n" .. TEXT .. "\n", r.out)
    end)

    it("is 1 when some failed: the error on stderr in text mode, the other results still printed", function()
      local missing = emu.images .. "missing.png"
      local a, c = emu.image .. "?n=1", emu.image .. "?n=3"
      local r = run(env_for(emu), { a, missing, c })
      assert.equal(1, r.status)
      assert.equal("==> " .. a .. " <==\n" .. TEXT .. "\n\n==> " .. c .. " <==\n" .. TEXT .. "\n", r.out)
      assert.matches("^aliocr: " .. missing:gsub("%p", "%%%0") .. ": aliocr api error: .*HTTP 666.*not billed" ..
        ".*\n$", r.err)
      assert.equal(1, select(2, r.err:gsub("\n", "")), "one line: " .. r.err)
    end)

    it("is 1 when some failed in tsv mode too, the error on stderr", function()
      local missing = emu.images .. "missing.png"
      local r = run(env_for(emu), { "-o", "tsv", missing, emu.image })
      assert.equal(1, r.status)
      assert.equal(TSV_HEADER .. emu.image .. "\t1\t\t\t\t\t" .. TEXT .. "\n", r.out)
      assert.matches("^aliocr: " .. missing:gsub("%p", "%%%0") .. ": aliocr api error: ", r.err)
    end)

    it("is 1 when some failed in json mode, the error in its JSON line", function()
      local missing = emu.images .. "missing.png"
      local r = run(env_for(emu), { "-o", "json", emu.image, missing })
      assert.equal(1, r.status)
      assert.equal("", r.err)
      local list = json_lines(r.out)
      assert.equal(TEXT, list[1].result.text)
      assert.equal(666, list[2].error.status)
    end)

    it("is 3 without credentials in the environment, sending nothing", function()
      local r = run(env_for(emu, { ALIOCR_APPCODE = false }), { emu.image })
      assert.equal(3, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: no credentials: set ALIOCR_APPCODE, or ALIOCR_APP_KEY and ALIOCR_APP_SECRET\n$", r.err)
      r = run(env_for(emu, { ALIOCR_APPCODE = "" }), { emu.image })
      assert.equal(3, r.status)
      r = run(env_for(emu, { ALIOCR_APPCODE = false, ALIOCR_APP_SECRET = SECRET }), { emu.image })
      assert.equal(3, r.status)
      assert.equal("", r.out)
      assert.falsy(r.err:find(SECRET, 1, true))
      assert_nothing_sent(emu)
    end)

    it("takes an AppKey and AppSecret from the environment", function()
      local r = run(env_for(emu, { ALIOCR_APPCODE = false, ALIOCR_APP_KEY = "key-1", ALIOCR_APP_SECRET = "secret-1" }),
        { emu.image })
      assert.equal(0, r.status, r.err)
      assert.equal(TEXT .. "\n", r.out)
      local log = emu:requests()
      assert.equal("key-1", log[1].credential)
      assert.equal("key-1", util.header(log[1], "X-Ca-Key"))
    end)

    it("is 3 when the gateway refuses the credentials, which are never printed", function()
      for _, format in ipairs({ "text", "json", "tsv" }) do
        local r = run(env_for(emu, { ALIOCR_APPCODE = SECRET }), { "-o", format, emu.image, emu.image .. "?n=2" })
        assert.equal(3, r.status, format)
        assert.falsy(r.out:find(SECRET, 1, true), format)
        assert.falsy(r.err:find(SECRET, 1, true), format)
        local where = format == "json" and r.out or r.err
        assert.truthy(where:find("Invalid AppCode", 1, true), format .. ": " .. where)
      end
      -- The secret did come from the environment.
      assert.equal("APPCODE " .. SECRET, util.header(emu:requests()[1], "Authorization"))
      -- A wrong AppSecret, and an AppCode the client refuses itself.
      local r = run(env_for(emu, { ALIOCR_APPCODE = false, ALIOCR_APP_KEY = "key-1", ALIOCR_APP_SECRET = SECRET }),
        { "-o", "json", emu.image })
      assert.equal(3, r.status)
      assert.equal("auth", json_lines(r.out)[1].error.kind)
      assert.falsy((r.out .. r.err):find(SECRET, 1, true))
      r = run(env_for(emu, { ALIOCR_APPCODE = SECRET .. "\nmore" }), { emu.image })
      assert.equal(3, r.status)
      assert.equal("", r.out)
      assert.falsy(r.err:find(SECRET, 1, true), r.err)
    end)

    it("is 3 when a quota error comes back, even if other images were read", function()
      emu:settings({ quota = 1 })
      local r = run(env_for(emu), { "-o", "json", "-c", "1", emu.image, emu.image .. "?n=2" })
      assert.equal(3, r.status)
      local list = json_lines(r.out)
      assert.equal(TEXT, list[1].result.text)
      assert.equal("quota", list[2].error.kind)
      assert.is_false(list[2].error.billed)
      assert.equal(1, emu:ledger().total.billed)
    end)
  end)

  describe("with an exhausted quota", function()
    local emu
    setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo", "--quota", "0" }) end)
    teardown(function() util.stop_clean(emu) end)
    before_each(function() emu:reset() end)

    it("exits 3, nothing billed", function()
      local r = run(env_for(emu), { emu.image, emu.image .. "?n=2" })
      assert.equal(3, r.status)
      assert.equal("", r.out)
      assert.equal(2, select(2, r.err:gsub("aliocr quota error: Quota Exhausted", "")), r.err)
      local ledger = emu:ledger()
      assert.equal(0, ledger.total.billed)
      assert.equal(2, ledger.total.requests)
    end)
  end)

  describe("interface URLs", function()
    local emu, moved
    setup(function()
      emu = emulator.start({ "--port", "0", "--appcode", "demo", "--path", "advanced=/ocrservice/advanced" })
      moved = emu.endpoint .. "/ocrservice/advanced"
    end)
    teardown(function() util.stop_clean(emu) end)
    before_each(function() emu:reset() end)

    -- Each case: environment, options, the path the call must reach, and the
    -- exit status (the emulator's /ocr/advanced is an unknown path: 400).
    local function cases()
      local E, H = emu.endpoint, emu.endpoint .. "/ocr/handwriting"
      return {
        { "--endpoint", {}, { "--endpoint", E }, "/ocr/advanced", 1 },
        { "--advanced-url", {}, { "--advanced-url", moved }, "/ocrservice/advanced", 0 },
        { "--advanced-url over --endpoint", {}, { "--endpoint", E, "--advanced-url", moved },
          "/ocrservice/advanced", 0 },
        { "--handwriting-url", {}, { "--handwriting", "--handwriting-url", H }, "/ocr/handwriting", 0 },
        { "ALIOCR_ENDPOINT", { ALIOCR_ENDPOINT = E }, {}, "/ocr/advanced", 1 },
        { "ALIOCR_ENDPOINT, handwriting", { ALIOCR_ENDPOINT = E }, { "--handwriting" }, "/ocr/handwriting", 0 },
        { "ALIOCR_ADVANCED_URL", { ALIOCR_ADVANCED_URL = moved }, {}, "/ocrservice/advanced", 0 },
        { "ALIOCR_ADVANCED_URL over ALIOCR_ENDPOINT", { ALIOCR_ADVANCED_URL = moved, ALIOCR_ENDPOINT = E }, {},
          "/ocrservice/advanced", 0 },
        { "--endpoint over ALIOCR_ADVANCED_URL", { ALIOCR_ADVANCED_URL = moved }, { "--endpoint", E },
          "/ocr/advanced", 1 },
        { "ALIOCR_HANDWRITING_URL", { ALIOCR_HANDWRITING_URL = H, ALIOCR_ENDPOINT = E .. "/nowhere" },
          { "--handwriting" }, "/ocr/handwriting", 0 },
      }
    end

    it("come from the options and the environment, in that order", function()
      for _, case in ipairs(cases()) do
        local name, env, opts, path, status = unpack(case)
        emu:reset()
        env.ALIOCR_APPCODE = "demo"
        local args = { unpack(opts) }
        args[#args + 1] = emu.image
        local r = run(env, args)
        assert.equal(status, r.status, name .. ": " .. r.err)
        local log = emu:requests()
        assert.equal(1, #log, name)
        assert.equal(path, log[1].path, name)
        if status == 0 then
          assert.equal("", r.err, name)
          assert.truthy(#r.out > 0, name)
        else
          assert.truthy(r.err:find("gateway error: Invalid Url (HTTP 400", 1, true), name .. ": " .. r.err)
        end
      end
    end)
  end)

  describe("progress bar", function()
    local emu
    setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo", "--latency-ms", "30" }) end)
    teardown(function() util.stop_clean(emu) end)
    before_each(function() emu:reset() end)

    local function images(n)
      local list = {}
      for i = 1, n do list[i] = emu.image .. "?n=" .. i end
      return list
    end

    it("is drawn on a terminal stderr for several images, counting up, then cleared", function()
      local urls = images(4)
      local r = run_tty(env_for(emu), { "-c", "1", unpack(urls) })
      assert.equal(0, r.status, r.tty)
      local list = assert_bars(r.tty, 4)
      -- One image at a time: every count shows.
      local seen = {}
      for _, b in ipairs(list) do
        if seen[#seen] ~= b.done then seen[#seen + 1] = b.done end
        assert.equal("", b.rest)
      end
      assert.same({ 0, 1, 2, 3, 4 }, seen)
      assert.equal(string.rep("#", 30), list[#list].fill)
      -- Nothing but bars and clears reached the terminal; stdout is untouched.
      assert.equal("", (r.tty:gsub("\r%[[#.]*%] %d+/%d+", ""):gsub("\r\27%[K", "")))
      assert.falsy(r.out:find("\r", 1, true))
      assert.truthy(r.out:find("==> " .. urls[4] .. " <==\n" .. TEXT .. "\n", 1, true))
    end)

    it("counts failures and clears the line before an error message", function()
      local missing = emu.images .. "missing.png"
      local r = run_tty(env_for(emu), { "-c", "8", emu.image, missing, emu.image .. "?n=2" })
      assert.equal(1, r.status)
      local list = assert_bars(r.tty, 3)
      assert.equal(" (1 failed)", list[#list].rest)
      assert.truthy(r.tty:find("\r\27%[Kaliocr: " .. missing:gsub("%p", "%%%0") .. ": aliocr api error: "),
        string.format("%q", r.tty))
    end)

    it("is not drawn for one image, with --no-progress, or when stderr is not a terminal", function()
      local r = run_tty(env_for(emu), { emu.image })
      assert.equal(0, r.status)
      assert.equal("", r.tty)
      assert.equal(TEXT .. "\n", r.out)
      r = run_tty(env_for(emu), { "--no-progress", unpack(images(3)) })
      assert.equal(0, r.status)
      assert.equal("", r.tty)
      r = run(env_for(emu), images(3))
      assert.equal(0, r.status)
      assert.equal("", r.err)
    end)

    it("is drawn without a terminal with --progress", function()
      local r = run(env_for(emu), { "--progress", "-o", "json", unpack(images(3)) })
      assert.equal(0, r.status)
      assert_bars(r.err, 3)
      assert.equal(3, #json_lines(r.out))
    end)
  end)
end)
