-- `make demo` and examples/demo.lua: with no account it starts the emulator
-- with the Tesseract backend, prints the text of every sample image and each
-- line with its position (read well enough: the same error-rate bound as the
-- recognition spec), runs a batch with progress, shows a 666 and a quota
-- error with their `billed` field, and leaves nothing running. With
-- credentials and interface URLs in the environment it calls those instead,
-- and never prints the AppCode.
local cjson = require("cjson")
local cer = require("helpers.cer")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local truth = cjson.decode(sh.read_all("examples/images/truth.json"))
local names = {}
for name in pairs(truth) do names[#names + 1] = name end
table.sort(names)

-- This run's interpreter: lua5.4 in `make test`, which runs spec/repo once,
-- under lua5.4 (as `make demo` does); `LUA=luajit spec/run
-- spec/repo/demo_spec.lua` runs the demo under another runtime.
local LUA = type(jit) == "table" and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
local DEMO = LUA == "lua5.4" and "make -s demo" or (LUA .. " examples/demo.lua")

-- A clean environment: only PATH (and TMPDIR, where the specs keep their
-- scratch files), plus `extra`.
local function clean_env(extra)
  local parts = { "env -i PATH=" .. sh.q(os.getenv("PATH")), "TMPDIR=" .. sh.q(os.getenv("TMPDIR") or "/tmp") }
  for k, v in pairs(extra or {}) do parts[#parts + 1] = k .. "=" .. sh.q(v) end
  return table.concat(parts, " ") .. " "
end

-- The lines printed under each "-- <label>" heading of a section.
local function section(out, heading)
  local body = out:match("\n== " .. heading .. "[^\n]*\n(.-)\n\n")
  assert.truthy(body, "no section " .. heading .. " in:\n" .. out)
  local by_label, current = {}, nil
  for line in body:gmatch("[^\n]+") do
    local label = line:match("^%-%- (.+)$")
    if label then
      current = {}
      by_label[label] = current
    elseif current then
      current[#current + 1] = line
    end
  end
  return by_label
end

describe("the demo", function()
  it(DEMO .. " reads every sample with both interfaces and a batch, shows two errors, exits 0", function()
    local out, status = sh.run(clean_env() .. DEMO)
    assert.equal(0, status, out)

    local one = section(out, "interface one")
    local two = section(out, "interface two")
    for _, name in ipairs(names) do
      local t = truth[name]
      local max = t.clean and 0.05 or 0.10
      local want = {}
      for i, l in ipairs(t.lines) do want[i] = l.words end
      -- Interface one: the text as one string.
      local text = assert(one[name .. ".png"], name .. " is missing from interface one")
      assert.is_true(cer.rate(text[1], table.concat(want)) <= max, name .. ": " .. text[1])
      -- Interface two: one printed line per line of the image, with its box.
      local lines = assert(two[name .. ".png"], name .. " is missing from interface two")
      assert.equal(#t.lines, #lines, table.concat(lines, "\n"))
      for i, line in ipairs(lines) do
        local left, top, width, height, words = line:match("^  %(left (%d+), top (%d+), (%d+)x(%d+)%) (.*)$")
        assert.truthy(left, line)
        local p = t.lines[i].position
        assert.is_true(math.abs(left - p.left) <= 10 and math.abs(top - p.top) <= 10 and
          math.abs(left + width - p.left - p.width) <= 10 and math.abs(top + height - p.top - p.height) <= 10, line)
        assert.is_true(cer.rate(words, want[i]) <= max + 0.1, line)
      end
    end

    -- The batch: one progress line per image, then the summary.
    for i = 1, #names do assert.truthy(out:find("  progress " .. i .. "/" .. #names .. "\n", 1, true), out) end
    local n = #names
    assert.truthy(out:find(string.format("  %d images: %d read, 0 failed, %d billed, ", n, n, n), 1, true), out)
    -- The errors, with their billing.
    assert.matches("an image that is not there: aliocr api error: [^\n]*HTTP 666, not billed", out)
    assert.matches("kind=api status=666 ok=0 billed=false retryable=false", out, 1, true)
    assert.matches("aliocr quota error: Quota Exhausted %(HTTP 403, not billed", out)
    -- Local images through the emulator's OSS: a file and bytes read, the
    -- bucket empty after.
    local local_part = out:match("\n== local images[^\n]*\n(.-)\n\n")
    assert.truthy(local_part, "no local images section in:\n" .. out)
    assert.matches("^%-%- a file: [%w-]+%.png\n", local_part)
    assert.matches("\n%-%- bytes in memory: [%w-]+%.png %(%d+ bytes%)\n", local_part)
    assert.is_nil(local_part:find("aliocr %a+ error"), local_part)
    assert.truthy(local_part:find("  2 uploads, 2 deletes; objects left in the bucket: 0", 1, true), local_part)
    -- What the client counted is what the emulator billed.
    assert.truthy(out:find(string.format("== this client: %d requests, %d billed, 2 not billed, 0 unknown",
      3 * n + 2, 3 * n), 1, true), out)
    assert.truthy(out:find(string.format("== the emulator's ledger: %d requests, %d billed, 2 not billed, quota left 0",
      3 * n + 2, 3 * n), 1, true), out)
  end)

  describe("with credentials and interface URLs in the environment", function()
    local emu
    setup(function()
      emu = emulator.start({ "--port", "0", "--appcode", "secret-code-4711", "--backend", "tesseract",
        "--images", "examples/images" })
    end)
    teardown(function() util.stop_clean(emu) end)

    it("calls those interfaces for the image URLs it is given, and never prints the AppCode", function()
      local urls = { emu.images .. "en-printed.png", emu.images .. "zh-printed.png" }
      local out, status = sh.run(clean_env({
        ALIOCR_APPCODE = "secret-code-4711",
        ALIOCR_ADVANCED_URL = emu.advanced, ALIOCR_HANDWRITING_URL = emu.handwriting,
      }) .. LUA .. " examples/demo.lua " .. sh.q(urls[1]) .. " " .. sh.q(urls[2]))
      assert.equal(0, status, out)
      assert.truthy(out:find("calling the service named by the environment", 1, true), out)
      assert.is_nil(out:find("secret-code-4711", 1, true))
      assert.truthy(out:find("The quick brown fox jumps over", 1, true), out)
      assert.truthy(out:find("图片文字识别的本地模拟器", 1, true), out)
      -- No quota section against a real service.
      assert.is_nil(out:find("Quota Exhausted", 1, true))
      local ledger = emu:ledger().credentials["secret-code-4711"]
      assert.equal(6, ledger.billed)     -- two images, three times each
      assert.equal(7, ledger.requests)   -- and the image that is not there
    end)

    it("asks for image URLs when given none", function()
      local out, status = sh.run(clean_env({ ALIOCR_APPCODE = "secret-code-4711", ALIOCR_ENDPOINT = emu.endpoint }) ..
        LUA .. " examples/demo.lua")
      assert.equal(1, status)
      assert.truthy(out:find("give the URLs of images the service can fetch", 1, true), out)
      assert.is_nil(out:find("secret-code-4711", 1, true))
    end)
  end)
end)
