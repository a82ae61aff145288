-- The command line tool in this process: require("aliocr.cli").main(argv,
-- sys) with stdout, stderr, stdin, the environment, the terminal checks and
-- the SIGINT flag standing in for the system. Everything here ends before a
-- client is made (usage, --help, bad options, where URLs come from), so no
-- server is needed; the exit status and every byte written are asserted.
local cli = require("aliocr.cli")
local sh = require("helpers.sh")

local USAGE = "\nTry 'aliocr --help'.\n"

--- A file that keeps what is written to it; `o.seek` stands in for seek.
local function sink(o)
  local f = { parts = {}, flushes = 0 }
  function f:write(...)
    for i = 1, select("#", ...) do self.parts[#self.parts + 1] = tostring((select(i, ...))) end
    return self
  end
  function f:flush()
    self.flushes = self.flushes + 1
    return self
  end
  function f:text() return table.concat(self.parts) end
  if o and o.seek then f.seek = function(_, whence) return o.seek(whence) end end
  return f
end

--- A stdin that yields `lines`, then ends (or fails with `read_error`).
local function source(lines, read_error)
  local i = 0
  return {
    read = function(_, format)
      assert.equal("*l", format)
      i = i + 1
      if lines[i] then return lines[i] end
      if read_error then return nil, read_error, 21 end
      return nil
    end,
  }
end

--- Runs the tool with `argv`. `o`: env (a table), tty (stdin and stderr are
-- terminals), stdin (a source), stdout (a sink), interrupted (the flag).
-- Returns { status, out, err, caught } (caught: catch_interrupts calls).
local function main(argv, o)
  o = o or {}
  local out, err, caught = o.stdout or sink(), sink(), 0
  local env = o.env or {}
  local status = cli.main(argv, {
    stdout = out,
    stderr = err,
    stdin = o.stdin or source({}),
    getenv = function(name) return env[name] end,
    isatty = function(fd)
      assert.truthy(fd == 0 or fd == 2, "isatty(" .. tostring(fd) .. ")")
      return o.tty == true
    end,
    catch_interrupts = function() caught = caught + 1 end,
    interrupted = function() return o.interrupted == true end,
  })
  return { status = status, out = out:text(), err = err:text(), caught = caught }
end

local function assert_usage(r, msg)
  assert.equal(2, r.status)
  assert.equal("", r.out)
  assert.equal("aliocr: " .. msg .. USAGE, r.err)
end

describe("aliocr.cli.main in process", function()
  describe("--help", function()
    local help

    setup(function()
      -- What the tool prints as a child process, under lua5.4.
      local out, status = sh.run("env -i PATH=\"$PATH\" bin/aliocr --help")
      assert.equal(0, status, out)
      help = out
    end)

    it("prints the same help as bin/aliocr on stdout and returns 0", function()
      for _, argv in ipairs({ { "--help" }, { "-h" }, { "http://a/b.png", "--help" } }) do
        local r = main(argv)
        assert.equal(0, r.status)
        assert.equal("", r.err)
        assert.equal(help, r.out)
      end
      assert.matches("^Usage: aliocr %(%[%-%-progress%] | %[%-%-no%-progress%]%) %[%-h%] %[%-f <file>%]\n", help)
      assert.matches("\nRead the text of images through the Aliyun marketplace OCR API%.\n", help)
      assert.matches("\n   %-h, %-%-help +Show this help message and exit%.\n", help)
      assert.matches("130 interrupted%. When several apply: 130, then 1 for results not written,\nthen 3%.\n$", help)
    end)

    it("answers --help before the mistakes after it, and not after a mistake before it", function()
      local r = main({ "--help", "--bogus", "-c", "0" })
      assert.equal(0, r.status)
      assert.equal(help, r.out)
      assert.equal("", r.err)
      assert_usage(main({ "--bogus", "--help" }), "unknown option '--bogus'")
      -- The numbers are checked after the whole command line was read.
      r = main({ "-c", "0", "--help" })
      assert.equal(0, r.status)
      assert.equal(help, r.out)
    end)

    it("catches SIGINT first, once per run, and flushes stdout", function()
      local out = sink()
      local r = main({ "--help" }, { stdout = out })
      assert.equal(1, r.caught)
      assert.equal(1, out.flushes)
      assert.equal(1, main({ "--bogus" }).caught)
    end)
  end)

  describe("usage errors", function()
    it("has no --version: a usage error, exit 2", function()
      assert_usage(main({ "--version" }), "unknown option '--version'")
      assert_usage(main({ "-V" }), "unknown option '-V'\nDid you mean one of these: '-c' '-f' '-h' '-o'?")
    end)

    it("names an unknown option, a missing argument and a bad choice", function()
      assert_usage(main({ "--bogus", "http://a/b.png" }), "unknown option '--bogus'")
      assert_usage(main({ "--file" }), "option '--file' requires an argument")
      assert_usage(main({ "-o" }), "option '-o' requires an argument")
      assert_usage(main({ "-o", "xml", "http://a/b.png" }), "argument for option '-o' must be one of 'text', " ..
        "'json', 'tsv'")
      assert_usage(main({ "--progress", "--no-progress", "http://a/b.png" }),
        "option '--no-progress' can not be used together with option '--progress'")
      -- A negative number reads as an option.
      assert_usage(main({ "--retries", "-1", "http://a/b.png" }),
        "unknown option '-1'\nDid you mean one of these: '-c' '-f' '-h' '-o'?")
    end)

    it("checks --concurrency, --timeout and --retries, in that order", function()
      local cases = {
        { { "-c", "0" }, "--concurrency must be a whole number >= 1, got '0'" },
        { { "-c", "1.5" }, "--concurrency must be a whole number >= 1, got '1.5'" },
        { { "-cx" }, "--concurrency must be a whole number >= 1, got 'x'" },
        { { "--concurrency=-2" }, "--concurrency must be a whole number >= 1, got '-2'" },
        { { "--timeout", "0" }, "--timeout must be a positive number, got '0'" },
        { { "--timeout", "x" }, "--timeout must be a positive number, got 'x'" },
        { { "--timeout", "nan" }, "--timeout must be a positive number, got 'nan'" },
        { { "--timeout=-1" }, "--timeout must be a positive number, got '-1'" },
        { { "--retries", "1.5" }, "--retries must be a whole number >= 0, got '1.5'" },
        { { "--retries", "x" }, "--retries must be a whole number >= 0, got 'x'" },
        { { "-c", "0", "--timeout", "0", "--retries", "x" }, "--concurrency must be a whole number >= 1, got '0'" },
        { { "--timeout", "0", "--retries", "x" }, "--timeout must be a positive number, got '0'" },
      }
      for _, c in ipairs(cases) do
        local argv = { "http://a/b.png" }
        for _, a in ipairs(c[1]) do argv[#argv + 1] = a end
        assert_usage(main(argv), c[2])
      end
    end)
  end)

  describe("image URLs", function()
    it("asks for URLs when there are none and stdin is a terminal, without reading it", function()
      local stdin = { read = function() error("stdin was read") end }
      assert_usage(main({}, { tty = true, stdin = stdin }),
        "no image URLs: give them as arguments, with --file, or on stdin")
    end)

    it("reads stdin when it is not a terminal; nothing but blanks and comments is no URLs", function()
      assert_usage(main({}, { stdin = source({}) }), "no image URLs")
      assert_usage(main({}, { stdin = source({ "", "  # a comment", "\t" }) }), "no image URLs")
      assert_usage(main({ "-f", "-" }, { tty = true, stdin = source({ "# only" }) }), "no image URLs")
    end)

    it("names stdin and --file when they cannot be read", function()
      assert_usage(main({}, { stdin = source({ "http://a/b.png" }, "Is a directory") }),
        "cannot read stdin: Is a directory")
      assert_usage(main({ "-f", "-" }, { stdin = source({}, "Bad file descriptor") }),
        "cannot read stdin: Bad file descriptor")
      local missing = sh.tmpdir() .. "/missing.txt"
      assert_usage(main({ "-f", missing }), "cannot read --file: " .. missing .. ": No such file or directory")
      os.execute("rmdir " .. sh.q(missing:match("^(.*)/")))
    end)

    it("sends nothing when SIGINT stopped a read, or arrived while the URLs were read: 130", function()
      local r = main({}, { stdin = source({ "http://a/b.png" }, "Interrupted system call"), interrupted = true })
      assert.same({ status = 130, out = "", err = "aliocr: interrupted: nothing was sent\n", caught = 1 }, r)
      r = main({ "http://a/b.png" }, { interrupted = true })
      assert.same({ status = 130, out = "", err = "aliocr: interrupted: nothing was sent\n", caught = 1 }, r)
    end)
  end)

  describe("stdout", function()
    it("refuses a closed stdout before reading any URL: 1", function()
      local stdin = { read = function() error("stdin was read") end }
      local closed = sink({ seek = function(whence)
        assert.equal("cur", whence)
        return nil, "Bad file descriptor", 9
      end })
      local r = main({}, { stdout = closed, stdin = stdin })
      assert.same({ status = 1, out = "", err = "aliocr: cannot write to stdout: Bad file descriptor: nothing " ..
        "was sent\n", caught = 1 }, r)
    end)

    it("takes a pipe (seek fails with ESPIPE) or a file", function()
      local pipe = sink({ seek = function() return nil, "Illegal seek", 29 end })
      assert_usage(main({ "-c", "0" }, { stdout = pipe }), "--concurrency must be a whole number >= 1, got '0'")
      local r = main({}, { stdout = pipe, stdin = source({}) })
      assert_usage(r, "no image URLs")
      local file = sink({ seek = function() return 0 end })
      assert_usage(main({}, { stdout = file, stdin = source({}) }), "no image URLs")
    end)
  end)
end)
