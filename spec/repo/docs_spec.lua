-- Every public function, option and field in the code is documented, both
-- in README.md and in the API reference LDoc makes from the code's comments
-- (`make docs`). The names are taken from the code itself: the module's and
-- the classes' functions, the option tables of aliocr.options, the fields of
-- real results, errors, stats, summaries and jobs, and `bin/aliocr --help`.
local aliocr = require("aliocr")
local Client = require("aliocr.client")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local readme = sh.read_all("README.md")

-- The names of an option table of aliocr.options (OPTIONS, CALL_OPTIONS,
-- BATCH_OPTIONS), sorted.
local function option_table(name)
  local keys = {}
  for k in pairs(require("aliocr.options")[name]) do keys[#keys + 1] = k end
  table.sort(keys)
  assert(#keys > 0, name .. " has no keys")
  return keys
end

local function public_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" and not k:find("^_") then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

-- `word` as a whole word in `text`, e.g. in backticks or after "client:".
local function has_word(text, word)
  return text:find("%f[%w_]" .. word:gsub("%p", "%%%0") .. "%f[^%w_]") ~= nil
end

-- The HTML of an LDoc item: from its anchor to the next one.
local function item(html, name)
  local start = html:find('<a name = "' .. name .. '"', 1, true)
  if not start then return nil end
  local stop = html:find('<a name = "', start + 1, true) or #html
  return html:sub(start, stop)
end

local function parameter(html, name)
  return html:find('<span class="parameter">' .. name .. "</span>", 1, true) ~= nil
end

describe("documentation", function()
  local module_html, client_html
  local emu, client, res, err, job, summary

  setup(function()
    local out, status = sh.run("make -s docs")
    assert.equal(0, status, out)
    module_html = sh.read_all("build/docs/modules/aliocr.html")
    client_html = sh.read_all("build/docs/modules/aliocr.client.html")
    assert.truthy(#module_html > 0 and #client_html > 0, "make docs wrote no reference")

    emu = emulator.start({ "--port", "0", "--appcode", "demo" })
    client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0 })
    res = assert(client:handwriting(emu.image))
    local _
    _, err = client:recognize(emu.images .. "missing.png")
    _, summary = client:batch("recognize", { emu.image })
    job = client:submit("recognize", emu.image)
    client:wait()
  end)

  teardown(function()
    if client then client:close() end
    util.stop_clean(emu)
  end)

  it("has every function of the module in the README and the reference", function()
    for _, name in ipairs(public_keys(aliocr)) do
      if type(aliocr[name]) == "function" then
        assert.truthy(readme:find("aliocr." .. name, 1, true), "README lacks aliocr." .. name)
        assert.truthy(item(module_html, name), "the reference lacks aliocr." .. name)
      end
    end
    for _, name in ipairs({ "_VERSION", "null" }) do
      assert.truthy(readme:find("aliocr." .. name, 1, true), "README lacks aliocr." .. name)
      assert.truthy(item(module_html, name), "the reference lacks aliocr." .. name)
    end
  end)

  it("has every method of a client and of a job in the README and the reference", function()
    local n = 0
    for _, name in ipairs(public_keys(Client)) do
      -- Client.new is aliocr.new.
      if type(Client[name]) == "function" and name ~= "new" then
        n = n + 1
        assert.truthy(readme:find("client:" .. name, 1, true), "README lacks client:" .. name)
        assert.truthy(item(client_html, "Client:" .. name), "the reference lacks Client:" .. name)
      end
    end
    assert.truthy(n >= 9, "found only " .. n .. " methods")
    local job_methods = getmetatable(job).__index
    for _, name in ipairs(public_keys(job_methods)) do
      if type(job_methods[name]) == "function" then
        assert.truthy(readme:find("job:" .. name, 1, true), "README lacks job:" .. name)
        assert.truthy(item(client_html, "Job:" .. name), "the reference lacks Job:" .. name)
      end
    end
  end)

  it("has every option of aliocr.new, of the calls and of batch in the README and the reference", function()
    local new_doc = item(module_html, "new")
    for _, opt in ipairs(option_table("OPTIONS")) do
      assert.truthy(readme:find("`" .. opt .. "`", 1, true), "README lacks option " .. opt)
      assert.truthy(parameter(new_doc, opt), "the reference of new lacks option " .. opt)
    end
    local recognize_doc = item(client_html, "Client:recognize")
    for _, opt in ipairs(option_table("CALL_OPTIONS")) do
      assert.truthy(readme:find("`" .. opt .. "`", 1, true), "README lacks call option " .. opt)
      assert.truthy(parameter(recognize_doc, opt), "the reference of recognize lacks option " .. opt)
    end
    local batch_doc = item(client_html, "Client:batch")
    for _, opt in ipairs(option_table("BATCH_OPTIONS")) do
      assert.truthy(readme:find("`" .. opt .. "`", 1, true), "README lacks batch option " .. opt)
      assert.truthy(parameter(batch_doc, opt), "the reference of batch lacks option " .. opt)
    end
  end)

  it("has every field of a result, an error, stats, a batch summary and a job", function()
    -- Tables of the module: their fields are listed in the table's item. A
    -- job is a class: each field has an item of its own (Job.<field>).
    local cases = {
      { "Result", res }, { "Error", err }, { "Stats", client:stats() }, { "Summary", summary }, { "Job", job },
    }
    for _, c in ipairs(cases) do
      local name, value = c[1], c[2]
      local doc = name ~= "Job" and item(module_html, name)
      assert.truthy(name == "Job" or doc, "the reference has no " .. name)
      local keys = public_keys(value)
      assert.truthy(#keys >= 3, name .. " has too few fields")
      for _, k in ipairs(keys) do
        assert.truthy(readme:find("`" .. k .. "`", 1, true), "README lacks " .. name .. " field " .. k)
        if name == "Job" then
          assert.truthy(item(client_html, "Job." .. k), "the reference lacks Job." .. k)
        else
          assert.truthy(parameter(doc, k), "the reference of " .. name .. " lacks field " .. k)
        end
      end
    end
    -- Every error kind the library can give is named in both.
    for _, kind in ipairs({ "auth", "quota", "throttled", "gateway", "api", "protocol", "http", "timeout",
                            "transport" }) do
      assert.truthy(readme:find("`" .. kind .. "`", 1, true), "README lacks error kind " .. kind)
      assert.truthy(has_word(item(module_html, "Error"), kind), "the reference lacks error kind " .. kind)
    end
  end)

  it("has every option of bin/aliocr --help in the README", function()
    local help = sh.capture("bin/aliocr --help")
    local n = 0
    for opt in help:gmatch("[%s,(%[](%-%-?[%a][%w%-]*)") do
      if opt ~= "-h" and opt ~= "--help" then
        n = n + 1
        assert.truthy(readme:find("`" .. opt, 1, true), "README lacks the command line option " .. opt)
      end
    end
    assert.truthy(n >= 14, "found only " .. n .. " options in --help")
  end)
end)
