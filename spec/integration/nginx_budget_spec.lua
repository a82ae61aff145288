-- A budget shared by every worker of an nginx through a lua_shared_dict
-- (budget.dict): 4 workers, 200 calls at once, a budget of 50. The
-- reservation is one atomic incr in the dict, so the workers never
-- overspend: the emulator's ledger bills exactly 50, and every other call
-- is refused in its worker before it is sent, and counted there.
local cjson = require("cjson")
local emulator = require("helpers.emulator")
local nginx = require("helpers.nginx")
local sh = require("helpers.sh")
local util = require("helpers.util")

local CALLS, LIMIT = 200, 50

if not util.nginx_only_here() then
  describe("a budget shared by nginx's workers", function() pending(util.NGINX_ONLY) end)
  return
end

describe("a budget shared by nginx's workers", function()
  local emu, web

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo", "--latency-ms", "50" })
    local conf = nginx.shared_config(emu.ca_file,
      [[location = /budget_case { content_by_lua_block { require("helpers.nginx_case").budget_case() } }]],
      4, "aliocr_budget")
    web = nginx.start(conf, { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint })
  end)
  teardown(function()
    if web then assert.same({}, web:stop()) end
    util.stop_clean(emu)
  end)

  it(CALLS .. " calls at once on 4 workers, a budget of " .. LIMIT .. ": exactly " .. LIMIT .. " billed", function()
    local dir = sh.tmpdir()
    finally(function() os.execute("rm -rf " .. sh.q(dir)) end)
    local args = {}
    for i = 1, CALLS do
      args[#args + 1] = string.format("-o %s/out%d %s", sh.q(dir), i,
        sh.q(web.url .. "/budget_case?url=" .. emu.image:gsub(":", "%%3A"):gsub("/", "%%2F") .. "%3Fn%3D" .. i))
    end
    sh.run("curl -s --parallel --parallel-immediate --parallel-max " .. CALLS .. " " .. table.concat(args, " "))
    local kinds, last = {}, {}
    for i = 1, CALLS do
      local body = sh.read_all(dir .. "/out" .. i)
      local ok, out = pcall(cjson.decode, body)
      assert(ok, "answer " .. i .. ": " .. body .. "\n" .. web:log())
      kinds[out.kind] = (kinds[out.kind] or 0) + 1
      -- The worker's counts when it answered: its refusals are counted as calls.
      local l = last[out.pid]
      if not l or out.requests > l.requests then last[out.pid] = out end
      if out.kind == "budget" then assert.is_false(out.billed) end
    end
    assert.same({ ok = LIMIT, budget = CALLS - LIMIT }, kinds)
    local workers, refused, requests = 0, 0, 0
    for _, l in pairs(last) do
      workers = workers + 1
      refused, requests = refused + l.refused, requests + l.requests
      assert.equal(l.refused, l.errors_budget)
    end
    assert.truthy(workers >= 2, "the calls went to one worker only")
    assert.same({ CALLS - LIMIT, CALLS }, { refused, requests })
    local ledger = emu:settled_ledger().total
    assert.same({ requests = LIMIT, billed = LIMIT }, { requests = ledger.requests, billed = ledger.billed })
  end)
end)
