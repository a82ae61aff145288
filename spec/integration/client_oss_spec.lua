-- Local images through OSS, end to end against the emulator's OSS endpoint
-- (its own V4 verifier, independent of the client's C signer): a file and
-- bytes in, the real answer out, the object deleted after whatever the
-- call's outcome; STS; OSS's refusals told apart and never followed by a
-- call to the service; faults (an upload refused, slow, the object gone
-- before the vendor's download); a batch of 50 files with an empty bucket
-- after; submit with cancels; stats equal to both ledgers; and no secret
-- in anything the client says.
local aliocr = require("aliocr")
local cjson = require("cjson")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local SEED_TEXT = "冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"
local PNG = sh.read_all("emulator/images/sample.png")
local KEY, STS = emulator.OSS_KEY, emulator.OSS_STS

describe("local images through OSS", function()
  local emu, dir

  setup(function()
    dir = sh.tmpdir()
    emu = emulator.start_oss({ "--https-port", "0", "--oss-https-port", "0", "--oss-bucket", "aliocr",
      "--oss-bucket", "other" })
  end)
  teardown(function()
    util.stop_clean(emu)
    os.execute("rm -rf " .. sh.q(dir))
  end)
  before_each(function() emu:reset() end)

  local function oss(extra)
    local o = { endpoint = emu.oss, region = emu.oss_region, bucket = "aliocr", access_key_id = KEY.id,
      access_key_secret = KEY.secret }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  local function client(extra, oss_extra)
    local o = { appcode = "demo", endpoint = emu.endpoint, oss = oss(oss_extra), retry_delay = 0 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return aliocr.new(o)
  end

  local function file(name, content)
    local path = dir .. "/" .. name
    sh.write_all(path, content or PNG)
    return path
  end

  -- The OSS ledger's counts: accepted puts, deletes, the vendor's gets.
  local function oss_counts()
    local l = emu:oss_ledger()
    return { puts = l.puts.accepted, refused_puts = l.puts.refused, deletes = l.deletes.accepted,
      vendor_gets = l.gets.by_vendor }
  end

  local function no_secret(text)
    for _, secret in ipairs({ KEY.secret, STS.secret, STS.token }) do
      assert.is_nil(text:find(secret, 1, true), "a secret in: " .. text)
    end
  end

  it("a file and bytes through both interfaces: the real answer, the object gone after", function()
    local c = client()
    local res = assert(c:recognize({ file = file("shot one.png") }))
    assert.equal(SEED_TEXT, res.text)
    local hw = assert(c:handwriting({ bytes = PNG }))
    assert.equal(4, #hw.lines)
    assert.same({}, emu:oss_objects("aliocr"))
    assert.same({ puts = 2, refused_puts = 0, deletes = 2, vendor_gets = 2 }, oss_counts())
    local s = c:stats()
    assert.same({ 2, 2, 2, 2 }, { s.requests, s.billed, s.uploads, s.deletes })
    assert.same({ requests = 2, billed = 2 },
      { requests = emu:settled_ledger().total.requests, billed = emu:settled_ledger().total.billed })
    -- What went to OSS: a V4-signed PUT of the image's bytes with its type,
    -- under the prefix with a random name, and the vendor's presigned GET.
    local log = emu:oss_requests()
    local put, get
    for _, r in ipairs(log) do
      if r.method == "PUT" and not put then put = r end
      if r.method == "GET" and r.by_vendor and not get then get = r end
    end
    assert.equal("header", put.auth)
    assert.matches("^aliocr/%x+%-%x+%-4%x+%-%x+%-%x+%.png$", put.key)
    assert.equal("url", get.auth)
    assert.equal(put.key, get.key)
    c:close()
  end)

  it("STS credentials: the token goes with every request, and no secret shows anywhere", function()
    local c = client(nil, { access_key_id = STS.id, access_key_secret = STS.secret, security_token = STS.token })
    local res = assert(c:recognize({ bytes = PNG }))
    assert.equal(SEED_TEXT, res.text)
    assert.same({}, emu:oss_objects("aliocr"))
    no_secret(tostring(c))
    no_secret(tostring(c._store.signer))
    -- A job keeps no presigned URL (it has the token) once its call is over;
    -- nor does the emulator's gateway log.
    local job = c:submit("recognize", { bytes = PNG })
    c:wait()
    for k, v in pairs(job) do
      if type(v) == "string" then no_secret(v) end
      assert.is_nil(k == "_image" and v or nil)
    end
    for _, r in ipairs(emu:requests()) do no_secret(cjson.encode(r)) end
    c:close()
    -- A wrong token: OSS refuses the upload, and the service is never called.
    emu:reset()
    c = client(nil, { access_key_id = STS.id, access_key_secret = STS.secret, security_token = "not-the-token" })
    local none, err = c:recognize({ bytes = PNG })
    assert.is_nil(none)
    assert.same({ "storage", false, "upload", "oss" }, { err.kind, err.billed, err.action, err.code_source })
    assert.equal(0, emu:settled_ledger().total.requests)
    no_secret(tostring(err))
    c:close()
  end)

  it("OSS's refusals are told apart, carry OSS's request id, and no call follows", function()
    -- A wrong secret: SignatureDoesNotMatch.
    local c = client(nil, { access_key_secret = "wrong-secret" })
    local none, err = c:recognize({ file = file("a.png") })
    assert.is_nil(none)
    assert.same({ "storage", 403, "SignatureDoesNotMatch", false, false },
      { err.kind, err.status, err.code, err.billed, err.retryable })
    local logged = emu:oss_requests()
    assert.equal(logged[#logged].request_id or err.request_id, err.request_id)
    assert.matches("^%x+$", err.request_id)
    no_secret(tostring(err))
    c:close()
    -- A bucket that does not exist: NoSuchBucket.
    c = client(nil, { bucket = "missing-bucket" })
    none, err = c:recognize({ bytes = PNG })
    assert.is_nil(none)
    assert.same({ "storage", 404, "NoSuchBucket" }, { err.kind, err.status, err.code })
    c:close()
    -- The clock and the permissions (OSS's own answers, injected).
    for _, code in ipairs({ "RequestTimeTooSkewed", "AccessDenied" }) do
      emu:reset()
      emu:fault({ mode = "oss_error", code = code })
      c = client()
      none, err = c:recognize({ bytes = PNG })
      assert.is_nil(none)
      assert.same({ "storage", 403, code, false }, { err.kind, err.status, err.code, err.retryable })
      assert.same({ 1, 0, 1 }, { c:stats().requests, c:stats().uploads, c:stats().errors.storage })
      c:close()
    end
    assert.equal(0, emu:settled_ledger().total.requests)
  end)

  it("an upload refused with a 5xx, or too slow, is tried again; the object is removed after", function()
    emu:fault({ mode = "oss_error", code = "InternalError", times = 1 })
    local c = client()
    local res = assert(c:recognize({ bytes = PNG }))
    assert.equal(SEED_TEXT, res.text)
    assert.same({ puts = 1, refused_puts = 1, deletes = 1, vendor_gets = 1 }, oss_counts())
    c:close()
    emu:reset()
    -- The first PUT times out, and the emulator stores it anyway once its
    -- delay is over, after the retry and after the call's own delete: the
    -- insurance delete (twice the timeout later, at the next drive)
    -- removes it.
    emu:fault({ mode = "oss_slow", ms = 700, times = 1 })
    c = client({ timeout = 0.5 })
    res = assert(c:recognize({ bytes = PNG }))
    assert.equal(SEED_TEXT, res.text)
    assert.same({ 1, 1 }, { c:stats().uploads, c:stats().deletes })
    c:poll(3) -- drives until the insurance delete is due and sent
    util.eventually(function() return #emu:oss_objects("aliocr") == 0 end)
    assert.same({}, emu:oss_objects("aliocr"))
    assert.same({ 1, 1 }, { c:stats().uploads, c:stats().deletes }) -- not counted
    c:close()
  end)

  it("an upload that keeps failing: no call; what the timed-out PUTs stored later is deleted", function()
    emu:fault({ mode = "oss_slow", ms = 700 })
    local c = client({ timeout = 0.5, retries = 1 })
    local none, err = c:recognize({ bytes = PNG })
    assert.is_nil(none)
    assert.same({ "storage", "OPERATION_TIMEDOUT", "transport", 2 }, { err.kind, err.code, err.code_source,
      err.attempts })
    assert.equal(0, emu:settled_ledger().total.requests)
    c:poll(3)
    util.eventually(function() return #emu:oss_objects("aliocr") == 0 end)
    assert.same({}, emu:oss_objects("aliocr"))
    assert.same({ 0, 0 }, { c:stats().uploads, c:stats().deletes })
    c:close()
  end)

  it("the object gone before the vendor's download: the vendor's error, not billed, and still a delete", function()
    emu:fault({ mode = "oss_gone", times = 1 })
    local c = client({ retries = 0 })
    local none, err = c:recognize({ bytes = PNG })
    assert.is_nil(none)
    assert.same({ "api", 666, false }, { err.kind, err.status, err.billed })
    assert.is_nil(err.cleanup_error) -- a DELETE of an absent object is OSS's 204
    assert.same({ 1, 1 }, { c:stats().uploads, c:stats().deletes })
    c:close()
  end)

  it("keep = true keeps the object and names it", function()
    local c = client(nil, { keep = true, prefix = "kept/" })
    local res = assert(c:recognize({ bytes = PNG }))
    assert.matches("^kept/.+%.png$", res.object)
    local objects = emu:oss_objects("aliocr")
    assert.equal(1, #objects)
    assert.equal(res.object, objects[1].key)
    assert.same({ #PNG, "image/png" }, { objects[1].size, objects[1].content_type })
    assert.same({ 1, 0 }, { c:stats().uploads, c:stats().deletes })
    c:close()
  end)

  it("over HTTPS, with the test CA", function()
    local c = client({ ca_file = emu.ca_file, endpoint = emu.https }, { endpoint = emu.oss_https })
    local res = assert(c:recognize({ file = file("tls.png") }))
    assert.equal(SEED_TEXT, res.text)
    assert.same({}, emu:oss_objects("aliocr"))
    c:close()
  end)

  it("a batch of 50 local files at concurrency 10: every answer, an empty bucket, stats = both ledgers", function()
    local c = client()
    local images = {}
    for i = 1, 50 do images[i] = i % 5 == 0 and { bytes = PNG } or { file = file("b" .. i .. ".png") } end
    local results, summary = c:batch("recognize", images, { concurrency = 10 })
    assert.same({ 50, 50, 0, 50 }, { summary.total, summary.ok, summary.failed, summary.billed })
    for i = 1, 50 do assert.equal(SEED_TEXT, results[i].text) end
    assert.same({}, emu:oss_objects("aliocr"))
    local s = c:stats()
    assert.same({ 50, 50, 50, 50 }, { s.requests, s.billed, s.uploads, s.deletes })
    assert.same({ puts = 50, refused_puts = 0, deletes = 50, vendor_gets = 50 }, oss_counts())
    local total = emu:settled_ledger().total
    assert.same({ requests = s.attempts, billed = s.billed }, { requests = total.requests, billed = total.billed })
    c:close()
  end)

  it("uploads that fail are never followed by a call, in a batch too", function()
    emu:fault({ mode = "oss_error", code = "AccessDenied", times = 5 })
    local c = client({ retries = 0 })
    local images = {}
    for i = 1, 10 do images[i] = { bytes = PNG } end
    local results, summary = c:batch("recognize", images, { concurrency = 4 })
    assert.same({ 10, 5, 5 }, { summary.total, summary.ok, summary.failed })
    local storage = 0
    for _, r in ipairs(results) do if aliocr.is_error(r) then storage = storage + 1 end end
    assert.equal(5, storage)
    assert.equal(5, emu:settled_ledger().total.requests)
    for i, r in ipairs(results) do
      assert.is_nil(r.cleanup_error, "image " .. i .. ": " .. tostring(r.cleanup_error))
    end
    assert.same({}, emu:oss_objects("aliocr"))
    assert.same({ 10, 5, 5, 5 }, { c:stats().requests, c:stats().billed, c:stats().uploads, c:stats().errors.storage })
    c:close()
  end)

  -- From a hostile review: what a finalizer (any allocation can run one)
  -- may do in the middle; stood in for here by the store's own functions.
  it("a job cancelled while its upload is being set up counts once, runs no callback, leaves nothing", function()
    local c = client()
    local ran = 0
    local job
    local put = c._store.put
    c._store.put = function(store, ...)
      c._store.put = put
      job:cancel() -- as a finalizer would, mid-allocation
      return put(store, ...)
    end
    job = c:submit("recognize", { bytes = PNG }, nil, function() ran = ran + 1 end)
    c:wait()
    c:poll(0.1)
    assert.same({ "cancelled", 0, 0 }, { job.state, ran, c:pending() })
    assert.same({ 1, 0, 1 }, { c:stats().requests, c:stats().billed, c:stats().errors.cancelled })
    c:close()
    assert.same({}, emu:oss_objects("aliocr"))
    assert.equal(0, emu:settled_ledger().total.requests)
  end)

  it("a blocking call whose client is closed after the upload: cancelled, and the object removed", function()
    local c = client()
    local url = c._store.url
    c._store.url = function(...)
      c:close() -- as a finalizer would, between the upload and the call
      return url(...)
    end
    local none, err = c:recognize({ bytes = PNG })
    assert.is_nil(none)
    assert.equal("cancelled", err.kind)
    assert.same({}, emu:oss_objects("aliocr"))
    assert.same({ 1, 1 }, { c:stats().uploads, c:stats().deletes })
    assert.equal(0, emu:settled_ledger().total.requests)
  end)

  it("a file that vanishes between its check and its upload: kind image, nothing stored", function()
    local c = client()
    local path = file("vanishing.png")
    local put = c._store.put
    c._store.put = function(...)
      os.remove(path)
      return put(...)
    end
    local none, err = c:recognize({ file = path })
    assert.is_nil(none)
    assert.same({ "image", "UNREADABLE", false }, { err.kind, err.code, err.billed })
    c:close()
    assert.equal(0, #emu:oss_requests())
  end)

  it("on_progress closes the client: images whose call had ended keep their results and billing", function()
    local c = client()
    local images = {}
    for i = 1, 6 do images[i] = { bytes = PNG } end
    local results, summary = c:batch("recognize", images, { concurrency = 3,
      on_progress = function(done) if done == 2 then c:close() end end })
    local billed, unknown = 0, 0
    for _, r in ipairs(results) do
      if r.billed == true then billed = billed + 1 end
      if r.billed == nil then unknown = unknown + 1 end
      if aliocr.is_error(r) and r.kind == "cancelled" and r.msg:find("not sent", 1, true) then
        assert.is_false(r.billed)
      end
    end
    assert.equal(summary.billed, billed)
    -- A call cut off in flight by the close may have reached the vendor and
    -- been billed: its billing is unknown, and the ledger lies between.
    local ledger = emu:settled_ledger().total.billed
    assert.truthy(ledger >= billed and ledger <= billed + unknown,
      ("the ledger billed %d, the results %d and %d unknown"):format(ledger, billed, unknown))
    local s = c:stats()
    assert.same({ billed, unknown }, { s.billed, s.unknown })
    assert.same({}, emu:oss_objects("aliocr"))
  end)

  it("a prefix with a '.' or '..' segment raises (the path would not be the one signed)", function()
    for _, prefix in ipairs({ "x/./", "x/../y/", "./", "../" }) do
      local ok, e = pcall(client, nil, { prefix = prefix })
      assert.is_false(ok)
      assert.matches("oss.prefix must not have a '.' or '..' segment", e)
    end
  end)

  it("submit: uploads, calls and deletes on the worker; cancel in each phase leaves nothing", function()
    -- (A cancelled upload's object is removed once the PUT's timeout is over.)
    local c = client({ timeout = 1 })
    local got = 0
    for _ = 1, 8 do c:submit("recognize", { bytes = PNG }, nil, function(res) if res then got = got + 1 end end) end
    c:wait()
    assert.equal(8, got)
    assert.same({}, emu:oss_objects("aliocr"))
    -- Cancelled while its upload is under way (a slow PUT), and while its
    -- call is (a slow vendor).
    emu:fault({ mode = "oss_slow", ms = 600, times = 1 })
    local slow_put = c:submit("recognize", { bytes = PNG })
    c:poll(0.05)
    assert.equal("running", slow_put.state)
    assert.is_true(slow_put:cancel())
    emu:fault({ mode = "latency", ms = 600, times = 1 })
    local slow_call = c:submit("recognize", { bytes = PNG })
    util.eventually(function()
      c:poll(0.02)
      return slow_call._phase == "call" and slow_call.state == "running"
    end)
    assert.is_true(slow_call:cancel())
    c:submit("recognize", emu.image)
    c:wait()
    util.eventually(function()
      c:poll(0.05)
      return #emu:oss_objects("aliocr") == 0
    end)
    assert.same({}, emu:oss_objects("aliocr"))
    local s = c:stats()
    assert.same({ 11, 9, 2 }, { s.requests, s.billed, s.errors.cancelled })
    c:close()
  end)

  it("a presigned URL is made for each attempt: waiting for a token or a Retry-After does not expire it", function()
    -- Three jobs uploaded at once, their calls 2 s apart: the last goes 4 s
    -- after its upload, with URLs valid 2 s (x-oss-date is in whole
    -- seconds: 1 s could expire between signing and the vendor's GET).
    local c = client({ rate_limit = { qps = 0.5 }, concurrency = 3 }, { expires = 2 })
    local jobs = {}
    for i = 1, 3 do jobs[i] = c:submit("recognize", { bytes = PNG }) end
    c:wait()
    for i = 1, 3 do
      assert.equal("done", jobs[i].state)
      assert.truthy(jobs[i].result, jobs[i].error and tostring(jobs[i].error))
    end
    -- A blocking call whose retry waits out a Retry-After of 2 s.
    emu:fault({ mode = "gateway", error = "throttled_app", retry_after = 2, times = 1 })
    local res, err = c:recognize({ bytes = PNG }, { retries = 1 })
    assert.truthy(res, err and tostring(err))
    assert.equal(2, res.attempts)
    local s = c:stats()
    assert.same({ 4, 4, 4, 4 }, { s.requests, s.billed, s.uploads, s.deletes })
    assert.same({ requests = 5, billed = 4 },
      { requests = emu:settled_ledger().total.requests, billed = emu:settled_ledger().total.billed })
    assert.same({}, emu:oss_objects("aliocr"))
    c:close()
  end)
end)
