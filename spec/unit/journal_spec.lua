-- aliocr.journal: reading a journal (a torn last line ignored and cut away,
-- a bad line before it refused with its number), appending, the states.
local cjson = require("cjson")
local journal = require("aliocr.journal")
local sh = require("helpers.sh")

local read_all, write_all = sh.read_all, sh.write_all

local function line(t) return cjson.encode(t) .. "\n" end

local A = { image = "http://x/a", interface = "advanced", outcome = "result", billed = true, text = "a" }
local B = { image = "http://x/b", interface = "advanced", outcome = "error", billed = false, kind = "image" }

describe("aliocr.journal", function()
  local dir, path
  before_each(function()
    dir = sh.tmpdir()
    path = dir .. "/j.jsonl"
  end)
  after_each(function() os.execute("rm -rf " .. sh.q(dir)) end)

  it("creates a journal, appends flushed lines, and reads them back with their states", function()
    local j = assert(journal.open(path))
    assert.is_nil(j:state(A.image, "advanced"))
    assert.is_true(j:append(A))
    -- Flushed: the line is in the file before close.
    assert.equal(line(A):len(), #read_all(path))
    assert.is_true(j:append(B))
    assert.is_true(j:append({ image = "http://x/c", interface = "advanced", outcome = "error", kind = "timeout" }))
    j:close()
    j = assert(journal.open(path))
    assert.equal("done", j:state(A.image, "advanced"))
    assert.is_nil(j:state(B.image, "advanced"), "not billed: tried again")
    assert.equal("unknown", j:state("http://x/c", "advanced"))
    assert.is_nil(j:state(A.image, "handwriting"), "kept per interface")
    assert.equal("a", j:entry(A.image, "advanced").text)
    assert.is_nil(j:entry("http://x/c", "advanced").billed, "JSON null reads as nil")
    assert.same({ done = 1, billed = 1, unknown = 1, all = 2 }, j:counts())
    j:close()
  end)

  it("an image withdrawn before it was sent (cancelled or budget, not billed) has no outcome", function()
    local j = assert(journal.open(path))
    for _, kind in ipairs({ "cancelled", "budget" }) do
      local u = "http://x/" .. kind
      assert.is_true(j:append({ image = u, interface = "advanced", outcome = "error", kind = "sent" }))
      assert.equal("unknown", j:state(u, "advanced"))
      assert.is_true(j:append({ image = u, interface = "advanced", outcome = "error", kind = kind, billed = false }))
      assert.is_nil(j:state(u, "advanced"))
      -- Billing unknown (an earlier attempt's): still unknown.
      assert.is_true(j:append({ image = u, interface = "advanced", outcome = "error", kind = kind }))
      assert.equal("unknown", j:state(u, "advanced"))
    end
    assert.same({ done = 0, billed = 0, unknown = 2, all = 2 }, j:counts())
    j:close()
  end)

  it("a later entry replaces an earlier one", function()
    write_all(path, line({ image = "u", interface = "advanced", outcome = "error", kind = "timeout" }) ..
      line({ image = "u", interface = "advanced", outcome = "result", billed = true }))
    local j = assert(journal.open(path))
    assert.equal("done", j:state("u", "advanced"))
    j:close()
  end)

  for _, torn in ipairs({ "half a line", '{"image": "http://x/b", "interf', "not json\n", line(B):sub(1, -2) }) do
    it("ignores a torn last line and cuts it away before appending: " .. torn:gsub("\n", "\\n"), function()
      write_all(path, line(A) .. torn)
      local j = assert(journal.open(path))
      assert.equal("done", j:state(A.image, "advanced"))
      -- A last line without its newline is torn even when it parses.
      assert.is_nil(j:state(B.image, "advanced"))
      assert.equal(line(A), read_all(path))
      assert.is_true(j:append(B))
      j:close()
      local text = read_all(path)
      assert.equal(line(A), text:sub(1, #line(A)))
      local rest = text:sub(#line(A) + 1)
      assert.equal("\n", rest:sub(-1))
      assert.same(B, cjson.decode(rest))
    end)
  end

  it("refuses a bad line before the last, naming it", function()
    for _, bad in ipairs({ "garbage", '{"image": 3}', "" }) do
      local text = line(A) .. line(B) .. bad .. "\n" .. line(A)
      write_all(path, text)
      local j, msg = journal.open(path)
      assert.is_nil(j)
      assert.matches(path:gsub("%p", "%%%0") .. ":3: ", msg)
      assert.equal(text, read_all(path), "left as it was")
    end
  end)

  it("parse: entries, the whole part's length, torn", function()
    local list, good, torn = journal.parse(line(A) .. "x")
    assert.equal(1, #list)
    assert.equal(#line(A), good)
    assert.is_true(torn)
    list, good, torn = journal.parse(line(A) .. line(B))
    assert.equal(2, #list)
    assert.equal(#line(A) + #line(B), good)
    assert.is_false(torn)
  end)
  it("refuses a journal that is not a regular file (a FIFO would be read for ever)", function()
    local fifo = os.tmpname()
    os.remove(fifo)
    os.execute("mkfifo " .. fifo)
    local j, err = journal.open(fifo)
    os.remove(fifo)
    assert.is_nil(j)
    assert.matches("is a fifo, not a regular file", err)
  end)
end)
