-- The documentation says what the code does. The API reference LDoc makes
-- from the code's comments (`make docs`, build/docs/) is the one home of the
-- option and field tables: every public function, option and field of the
-- code is there, with the type, default and range the code has; the
-- README has one line per function and the error kinds, and links the
-- reference; docs/cli.md has every option of `bin/aliocr --help`; the links
-- of the README, docs/ and emulator/README.md lead somewhere; and the walk
-- of docs/development.md names functions that are where it says. The
-- names are taken from the code itself: the module's and the classes'
-- functions, the tables of aliocr.options, the kinds and codes of
-- aliocr.errors, the fields of real results, errors, stats, summaries and
-- jobs, and `bin/aliocr --help`.
local aliocr = require("aliocr")
local Client = require("aliocr.client")
local options = require("aliocr.options")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local readme = sh.read_all("README.md")
local cli_doc = sh.read_all("docs/cli.md")
local development = sh.read_all("docs/development.md")

-- The names of an option table of aliocr.options (OPTIONS, CALL_OPTIONS,
-- BATCH_OPTIONS), sorted.
local function option_table(name)
  local keys = {}
  for k in pairs(options[name]) do keys[#keys + 1] = k end
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

-- The HTML of one parameter or field of an item: from its name to the end
-- of its list entry.
local function entry(html, name)
  local start = html:find('<span class="parameter">' .. name .. "</span>", 1, true)
  if not start then return nil end
  local stop = html:find("</li>", start, true) or #html
  return html:sub(start, stop)
end

-- The text of some HTML, its white space as single spaces.
local function text_of(html)
  return (html:gsub("<[^>]*>", ""):gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("%s+", " "))
end

-- The type an entry shows, and the types of the code (aliocr.options) it
-- may stand for: LDoc writes `int` and `bool`.
local function entry_type(e)
  local types = e:match('<span class="types">(.-)</span>%s')
  return types and text_of(types):gsub("%s", "")
end
local TYPE_NAMES = { number = { number = true, int = true }, boolean = { boolean = true, bool = true } }

local function same_type(code_type, doc_type)
  local names = TYPE_NAMES[code_type] or { [code_type] = true }
  return names[doc_type] == true
end

-- Whether aliocr.new accepts option `name` with value `v`.
local function accepts(name, v)
  local ok, client = pcall(aliocr.new, { appcode = "x", endpoint = "http://127.0.0.1:1", [name] = v })
  if ok then client:close() end
  return ok
end

-- The error kinds and aliocr's own codes in lua/aliocr/errors.lua: the
-- literals given as a kind (`kind = "..."`, `return "<kind>", retryable`)
-- and as a code (`code = "..."`).
local function from_errors()
  local kinds, codes = {}, {}
  for line in sh.read_all("lua/aliocr/errors.lua"):gmatch("[^\n]+") do
    -- The value of a `kind = ...` field (up to the next field), or what a
    -- `return "kind", retryable` line returns.
    local value = line:match("kind = (.-),%s*[%a_]+ =") or line:match("kind = (.*)$") or
      line:match('return ("%l+"), ')
    if value then
      for k in value:gmatch('"(%l+)"') do kinds[k] = true end
    end
    if line:find("code = ", 1, true) then
      for c in line:gmatch('"(%u[%u_]+)"') do codes[c] = true end
    end
  end
  local function sorted(set)
    local list = {}
    for k in pairs(set) do list[#list + 1] = k end
    table.sort(list)
    return list
  end
  return sorted(kinds), sorted(codes)
end

-- The pages written by hand, and what LDoc makes of them.
local function doc_pages()
  local pages = { "README.md", "emulator/README.md" }
  for name in sh.capture("ls docs"):gmatch("[^\n]+") do
    if name:find("%.md$") then pages[#pages + 1] = "docs/" .. name end
  end
  return pages
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- `path` relative to the directory of the file `from`, from the top.
local function resolve(from, path)
  local parts = {}
  for part in (from:match("^(.*/)") or ""):gmatch("[^/]+") do parts[#parts + 1] = part end
  for part in path:gmatch("[^/]+") do
    if part == ".." then parts[#parts] = nil elseif part ~= "." then parts[#parts + 1] = part end
  end
  return table.concat(parts, "/")
end

-- Whether the file `path` (text `text`) defines the function `name` (as
-- the walk writes it: `Client:_call`, `M.image`, `start`, `core.engine`,
-- `reader:feed`): in Lua a function or a field assigned by that name (a
-- class's own when qualified by a class, e.g. `Client:`); in C a function
-- of that name, or a string literal of it (the Lua name under which the
-- file registers a function). libcurl's and nginx's functions (`curl_*`,
-- `sock:*`, `ngx.*`) are not defined in the project: they are to be called
-- in the file.
local function defines(path, text, name)
  if name:find("^curl_") or name:find("^sock[.:]") or name:find("^ngx%.") then
    return text:find(name, 1, true) ~= nil
  end
  local last = name:match("([%w_]+)$")
  local class = name:match("^(%u[%w_]*)[.:]")
  if path:find("%.lua$") then
    if class then
      return text:find("\nfunction " .. class .. "[.:]" .. last .. "%s*%(") ~= nil
    end
    for line in text:gmatch("[^\n]+") do
      if line:find("^%s*local%s+function%s+" .. last .. "%s*%(") or line:find("^%s*function%s+" .. last .. "%s*%(")
          or line:find("^%s*function%s+[%w_.:]*[.:]" .. last .. "%s*%(") or line:find("^%s*[%w_]+%." .. last .. "%s*=")
          or line:find("^%s*[%w_]+%." .. last .. "%s*,.*=") then
        return true
      end
    end
    return false
  end
  for line in text:gmatch("[^\n]+") do
    if line:find("^[%a_][%w_ %*]*[%s%*]" .. last .. "%(") and not line:find(";%s*$") then return true end
  end
  return text:find('"' .. last .. '"', 1, true) ~= nil
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

  it("has every option of aliocr.new in the reference, with the code's type and default", function()
    local new_doc = item(module_html, "new")
    for _, opt in ipairs(option_table("OPTIONS")) do
      assert.truthy(parameter(new_doc, opt), "the reference of new lacks option " .. opt)
      local e = entry(new_doc, opt)
      local code_type, doc_type = options.OPTIONS[opt], entry_type(e)
      assert.truthy(doc_type and same_type(code_type, doc_type),
        "the reference gives option " .. opt .. " the type " .. tostring(doc_type) .. "; the code: " .. code_type)
      local default = options.DEFAULTS[opt]
      if default ~= nil then
        local shown = e:match("%(<em>default</em>%s*(.-)%)")
        shown = shown and text_of(shown)
        local same = shown ~= nil and (type(default) == "number" and tonumber(shown) == default
          or shown == '"' .. tostring(default) .. '"')
        assert.truthy(same, "the reference gives option " .. opt .. " the default " .. tostring(shown) ..
          "; the code: " .. tostring(default))
      end
    end
    -- Every default of the code is an option's.
    for opt in pairs(options.DEFAULTS) do
      assert.truthy(options.OPTIONS[opt], "DEFAULTS has " .. opt .. ", which is no option")
    end
  end)

  it("gives each number option of aliocr.new the range aliocr.new enforces", function()
    local new_doc = item(module_html, "new")
    local n = 0
    for _, opt in ipairs(option_table("OPTIONS")) do
      if options.OPTIONS[opt] == "number" then
        local e = entry(new_doc, opt)
        local doc_type = entry_type(e)
        local open, lo, hi = text_of(e):match("in ([%(%[])([%d.]+), ([%d.]+)%]")
        assert.truthy(open, "the reference gives option " .. opt .. " no range, e.g. \"in [1, 1000]\"")
        lo, hi = tonumber(lo), tonumber(hi)
        local int = doc_type == "int"
        local step = int and 1 or 0.001
        n = n + 1
        assert.truthy(accepts(opt, hi), opt .. " = " .. hi .. " (the top of its range) is refused")
        local above = hi + (int and 1 or math.max(1, hi * 1e-6))
        assert.is_false(accepts(opt, above), opt .. " above " .. hi .. " is accepted")
        if open == "[" then
          assert.truthy(accepts(opt, lo), opt .. " = " .. lo .. " (the bottom of its range) is refused")
          assert.is_false(accepts(opt, lo - step), opt .. " below " .. lo .. " is accepted")
        else
          assert.is_false(accepts(opt, lo), opt .. " = " .. lo .. " is accepted, outside (" .. lo .. ", ...")
          assert.truthy(accepts(opt, lo + step), opt .. " just above " .. lo .. " is refused")
        end
        if int then assert.is_false(accepts(opt, lo + 1.5), opt .. " takes a number that is not whole") end
      end
    end
    assert.truthy(n >= 9, "found only " .. n .. " number options")
  end)

  it("has every option of the calls and of batch in the reference", function()
    local recognize_doc = item(client_html, "Client:recognize")
    for _, opt in ipairs(option_table("CALL_OPTIONS")) do
      assert.truthy(parameter(recognize_doc, opt), "the reference of recognize lacks option " .. opt)
    end
    local batch_doc = item(client_html, "Client:batch")
    for _, opt in ipairs(option_table("BATCH_OPTIONS")) do
      assert.truthy(parameter(batch_doc, opt), "the reference of batch lacks option " .. opt)
    end
  end)

  it("keeps the option tables in the reference only: the README and docs/ link to it", function()
    for _, page in ipairs(doc_pages()) do
      local text = sh.read_all(page)
      for _, name in ipairs({ "OPTIONS", "CALL_OPTIONS", "BATCH_OPTIONS" }) do
        for _, opt in ipairs(option_table(name)) do
          assert.falsy(text:find("\n| `" .. opt .. "`", 1, true), page .. " repeats the table row of option " .. opt)
        end
      end
    end
    assert.truthy(readme:find("build/docs/modules/aliocr.html#new", 1, true),
      "README does not link aliocr.new's reference")
  end)

  it("has every field of a result, an error, stats, a batch summary and a job in the reference", function()
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
        if name == "Job" then
          assert.truthy(item(client_html, "Job." .. k), "the reference lacks Job." .. k)
        else
          assert.truthy(parameter(doc, k), "the reference of " .. name .. " lacks field " .. k)
        end
      end
    end
    -- The fields that only some outcomes have.
    for _, k in ipairs({ "unknown_attempts" }) do
      assert.truthy(parameter(item(module_html, "Result"), k), "the reference of Result lacks field " .. k)
      assert.truthy(parameter(item(module_html, "Error"), k), "the reference of Error lacks field " .. k)
    end
  end)

  it("documents every error kind and every code of aliocr.errors, and whose codes are whose", function()
    local kinds, codes = from_errors()
    assert.truthy(#kinds >= 10, "found only " .. #kinds .. " error kinds in errors.lua")
    local error_doc = item(module_html, "Error")
    for _, kind in ipairs(kinds) do
      assert.truthy(readme:find("`" .. kind .. "`", 1, true), "README lacks error kind " .. kind)
      assert.truthy(has_word(error_doc, kind), "the reference lacks error kind " .. kind)
      assert.truthy(error_doc:find("<code>" .. kind .. "</code>", 1, true), "the reference lists no kind " .. kind)
    end
    assert.truthy(#codes >= 3, "found only " .. #codes .. " codes in errors.lua")
    local source_doc = text_of(entry(error_doc, "code_source") or "")
    assert.truthy(source_doc ~= "", "the reference of Error lacks field code_source")
    for _, code in ipairs(codes) do
      assert.truthy(source_doc:find(code, 1, true), "the reference of code_source lacks aliocr's code " .. code)
    end
    for _, source in ipairs({ "gateway", "transport", "aliocr" }) do
      assert.truthy(source_doc:find('"' .. source .. '"', 1, true), "the reference of code_source lacks " .. source)
    end
    -- A job's method is `call`; `kind` is only its deprecated alias.
    assert.truthy(item(client_html, "Job.call"), "the reference lacks Job.call")
    assert.truthy(text_of(item(client_html, "Job.kind")):find("Deprecated", 1, true),
      "Job.kind is not marked deprecated")
  end)

  it("has the names it documents in the code: job.call and err.code_source", function()
    -- What the reference says of these fields holds for real jobs and errors.
    assert.equal("recognize", job.call)
    assert.equal(job.call, job.kind)
    local hw = client:submit("handwriting", emu.image)
    client:wait()
    assert.equal("handwriting", hw.call)
    assert.is_nil(err.code_source) -- a 666 has no code
    local refused = aliocr.new({ appcode = "demo", endpoint = "http://127.0.0.1:1", retries = 0 })
    local _, e = refused:recognize(emu.image)
    refused:close()
    assert.equal("COULDNT_CONNECT", e.code)
    assert.equal("transport", e.code_source)
    emu:fault({ mode = "not_json", times = 1 })
    _, e = client:recognize(emu.image)
    assert.equal("BAD_JSON", e.code)
    assert.equal("aliocr", e.code_source)
    emu:fault({ mode = "gateway", status = 403, message = "Api Market Subscription quota exhausted", code = "B403MQ",
                times = 1 })
    _, e = client:recognize(emu.image)
    assert.equal("B403MQ", e.code)
    assert.equal("gateway", e.code_source)
  end)

  it("has every option of bin/aliocr --help in docs/cli.md", function()
    local help = sh.capture("bin/aliocr --help")
    local n = 0
    for opt in help:gmatch("[%s,(%[](%-%-?[%a][%w%-]*)") do
      if opt ~= "-h" and opt ~= "--help" then
        n = n + 1
        assert.truthy(cli_doc:find("`" .. opt, 1, true), "docs/cli.md lacks the command line option " .. opt)
      end
    end
    assert.truthy(n >= 14, "found only " .. n .. " options in --help")
  end)

  it("makes one site: the reference and every page of docs/ as its topics", function()
    for _, page in ipairs(doc_pages()) do
      if page ~= "emulator/README.md" then
        local name = page:match("([^/]+)$")
        assert.truthy(exists("build/docs/topics/" .. name .. ".html"), "make docs did not make a topic of " .. page)
      end
    end
    local index = sh.read_all("build/docs/index.html")
    assert.truthy(index:find("topics/development.md.html", 1, true), "the site's index does not list the topics")
  end)

  it("has links in the README, docs/ and emulator/README.md that lead somewhere", function()
    local n = 0
    for _, page in ipairs(doc_pages()) do
      for href in sh.read_all(page):gmatch("%]%(([^)%s]+)%)") do
        if not href:find("^%a[%w+.-]*:") and not href:find("^#") then
          n = n + 1
          local path, anchor = href:match("^([^#]*)#?(.*)$")
          local target = resolve(page, path)
          assert.truthy(exists(target), page .. " links " .. href .. ", which is not there (" .. target .. ")")
          if anchor ~= "" and target:find("^build/docs/.*%.html$") then
            local html = sh.read_all(target)
            assert.truthy(item(html, anchor) or html:find('<a name="' .. anchor .. '"', 1, true),
              page .. " links " .. href .. ": no such item")
          end
        end
      end
    end
    assert.truthy(n >= 20, "found only " .. n .. " links")
  end)

  it("has a walk from client:recognize to the wire whose every function is where it says", function()
    local walk = development:match("\n## The walk[^\n]*\n(.-)\n## ")
    assert.truthy(walk, "docs/development.md has no section 'The walk'")
    local steps, functions = 0, 0
    for step in walk:gmatch("\n(%d+%. [^\n]+)") do
      steps = steps + 1
      local files, names = {}, {}
      for span in step:gmatch("`([^`]+)`") do
        if span:find("^[%w_./-]+/[%w_.-]+%.[ch]$") or span:find("^[%w_./-]+/[%w_.-]+%.lua$") then
          files[#files + 1] = span
        elseif span:find("^[%a_][%w_.:]*%(%)$") then
          names[#names + 1] = span:sub(1, -3)
        end
      end
      assert.truthy(#files > 0 and #names > 0, "a step of the walk names no file or no function: " .. step)
      local texts = {}
      for i, f in ipairs(files) do
        assert.truthy(exists(f), "the walk names " .. f .. ", which is not there")
        texts[i] = sh.read_all(f)
      end
      for _, name in ipairs(names) do
        functions = functions + 1
        local found = false
        for i, f in ipairs(files) do
          if defines(f, texts[i], name) then found = true break end
        end
        assert.truthy(found, "the walk names " .. name .. "() in " .. table.concat(files, ", ") ..
          ", where it is not: " .. step)
      end
    end
    assert.truthy(steps >= 20 and functions >= 50,
      "the walk has only " .. steps .. " steps and " .. functions .. " functions")
    -- It starts where the README starts, and reaches the wire both ways.
    for _, name in ipairs({ "Client:recognize()", "curl_multi_add_handle()", "Engine:perform()", "sock:send()",
                            "aliocr_push_response()", "errors.classify()", "result.build()" }) do
      assert.truthy(walk:find("`" .. name .. "`", 1, true), "the walk does not name " .. name)
    end
  end)
end)
