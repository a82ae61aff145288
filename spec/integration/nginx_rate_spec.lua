-- A rate limiter shared by every worker of an nginx through a
-- lua_shared_dict (rate_limit.dict): the workers act as one client. With
-- qps = 10 and 40 calls at once spread over 4 workers, the emulator sees
-- no more than 10 in any second (4 limiters of their own would let 40 go
-- in one); with an adaptive limiter against an emulator limited to 5 calls
-- a second, every call gets through and the machine's rate comes down.
local cjson = require("cjson")
local emulator = require("helpers.emulator")
local nginx = require("helpers.nginx")
local sh = require("helpers.sh")
local util = require("helpers.util")

local CALLS = 40

if not util.nginx_only_here() then
  describe("a rate limiter shared by nginx's workers", function() pending(util.NGINX_ONLY) end)
  return
end

describe("a rate limiter shared by nginx's workers", function()
  local emu, web

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
    local conf = nginx.shared_config(emu.ca_file,
      [[location = /rate_case { content_by_lua_block { require("helpers.nginx_case").rate_case() } }]],
      4, "aliocr_rate")
    web = nginx.start(conf, { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint })
  end)
  teardown(function()
    if web then assert.same({}, web:stop()) end
    util.stop_clean(emu)
  end)
  before_each(function() emu:reset() end)

  -- CALLS requests at once to /rate_case with `query`: the decoded answers.
  local function fire(query)
    local dir = sh.tmpdir()
    local args = {}
    for i = 1, CALLS do
      args[#args + 1] = string.format("-o %s/out%d %s", sh.q(dir), i,
        sh.q(web.url .. "/rate_case?" .. query .. "&url=" .. emu.image:gsub(":", "%%3A"):gsub("/", "%%2F") ..
          "%3Fn%3D" .. i))
    end
    sh.run("curl -s --parallel --parallel-immediate --parallel-max " .. CALLS .. " " .. table.concat(args, " "))
    local answers = {}
    for i = 1, CALLS do
      local body = sh.read_all(dir .. "/out" .. i)
      local ok, out = pcall(cjson.decode, body)
      assert(ok, "answer " .. i .. ": " .. body .. "\n" .. web:log())
      answers[i] = out
    end
    os.execute("rm -rf " .. sh.q(dir))
    return answers
  end

  local function workers_of(answers)
    local pids, n = {}, 0
    for _, a in ipairs(answers) do
      if not pids[a.pid] then pids[a.pid], n = true, n + 1 end
    end
    return n
  end

  it("qps = 10 for the machine: never more than 10 arrivals in a second", function()
    local answers = fire("qps=10")
    for _, a in ipairs(answers) do assert.equal("ok", a.kind) end
    assert.truthy(workers_of(answers) >= 2, "the calls went to one worker only")
    util.assert_paced(emu:arrivals(), 10, CALLS)
  end)

  it("adaptive against an emulator limited to 5 a second: every call passes, the machine's rate comes down", function()
    emu:settings({ rate = 5 })
    local answers = fire("adaptive=1")
    local decreases = 0
    for _, a in ipairs(answers) do
      assert.equal("ok", a.kind)
      decreases = math.max(decreases, a.decreases)
    end
    assert.truthy(decreases >= 1)
    local total = emu:settled_ledger().total
    assert.equal(CALLS, total.billed)
  end)
end)
