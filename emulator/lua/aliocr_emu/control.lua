-- The control endpoint, on a listener of its own (the API listener cannot
-- reach it). JSON in, JSON out:
--
--   GET    /health        {"ok":true}
--   GET    /settings      the settings in force
--   POST   /settings      change latency_ms, backend_timeout_ms, rate,
--                         rate_retry_after, quota, quotas ({credential:
--                         n|false}), errors, fetch
--   GET    /faults        the fault rules with their hits and uses left
--   POST   /faults        add a rule (an object) or rules (an array)
--   DELETE /faults        remove every rule
--   GET    /ledger        billed calls, requests and quota per credential
--   GET    /requests      the request log (?since=N for entries after seq N)
--   GET    /connections   TCP connections accepted by the API listeners
--   GET    /oss/objects   the OSS endpoint's objects (?bucket=NAME: that
--                         bucket's list; without: every bucket's)
--   GET    /oss/requests  the OSS request log (?since=N)
--   POST   /reset         forget everything since the launch (the OSS
--                         buckets are emptied too)
local cjson = require("cjson.safe")
local faults = require("aliocr_emu.faults")
local state = require("aliocr_emu.state")

local M = {}

local function send(status, value)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(cjson.encode(value), "\n")
  return ngx.exit(ngx.OK)
end

-- cjson writes an empty table as {}; a list must stay a list.
local function send_list(list)
  if #list == 0 then
    ngx.header["Content-Type"] = "application/json"
    ngx.print("[]\n")
    return ngx.exit(ngx.OK)
  end
  return send(200, list)
end

local function bad(msg) return send(400, { error = msg }) end

local function json_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then return nil, "a JSON body is required" end
  local value, err = cjson.decode(body)
  if value == nil then return nil, "bad JSON: " .. tostring(err) end
  return value
end

local function settings_view()
  local s = state.settings()
  local view = {}
  for _, k in ipairs({ "latency_ms", "backend_timeout_ms", "rate", "rate_retry_after", "errors", "fetch",
                       "backend", "max_body", "paths" }) do
    view[k] = s[k]
  end
  view.quota = s.quota or cjson.null
  view.quotas = s.quotas or cjson.null
  return view
end

local routes = {}

routes["GET /health"] = function() return send(200, { ok = true }) end

routes["GET /settings"] = function() return send(200, settings_view()) end

routes["POST /settings"] = function()
  local changes, err = json_body()
  if type(changes) ~= "table" then return bad(err or "settings are a JSON object") end
  local ok
  ok, err = state.update_settings(changes)
  if not ok then return bad(err) end
  return send(200, settings_view())
end

routes["GET /faults"] = function()
  local list = {}
  for i, r in ipairs(state.faults()) do
    local view = {}
    for k, v in pairs(r) do view[k] = v end
    view.hits, view.left = state.fault_counts(r)
    list[i] = view
  end
  return send_list(list)
end

routes["POST /faults"] = function()
  local rules, err = json_body()
  if type(rules) ~= "table" then return bad(err or "a fault is a JSON object") end
  if next(rules) == nil then return bad("no fault given") end
  if rules[1] == nil then rules = { rules } end -- one rule, not a list
  for i, r in ipairs(rules) do
    local why = faults.check(r)
    if why then return bad("fault " .. i .. ": " .. why) end
  end
  return send(200, { ids = state.add_faults(rules) })
end

routes["DELETE /faults"] = function()
  state.clear_faults()
  return send(200, { ok = true })
end

routes["GET /ledger"] = function() return send(200, state.ledger()) end

routes["GET /requests"] = function()
  local since = ngx.var.arg_since
  if since and not since:find("^%d+$") then return bad("since must be a number") end
  return send_list(state.requests(tonumber(since)))
end

routes["GET /connections"] = function() return send(200, state.connections()) end

-- An object as the control endpoint shows it.
local function object_view(meta)
  return { key = meta.key, size = meta.size, etag = meta.etag, content_type = meta.content_type,
           last_modified = meta.last_modified }
end

local function oss_off() return send(404, { error = "the OSS endpoint is off (start with --oss-port)" }) end

routes["GET /oss/objects"] = function()
  local o = state.oss()
  if not o then return oss_off() end
  local store = require("aliocr_emu.oss_store")
  local bucket = ngx.var.arg_bucket
  local function list(name)
    local out = {}
    for i, meta in ipairs(store.list(name)) do out[i] = object_view(meta) end
    return out
  end
  if bucket then
    if not o.buckets[bucket] then return send(404, { error = "no such bucket" }) end
    return send_list(list(bucket))
  end
  -- { "<bucket>": [objects...] }, an empty list written as [] (cjson would
  -- write {}).
  local names = {}
  for name in pairs(o.buckets) do names[#names + 1] = name end
  table.sort(names)
  local parts = {}
  for i, name in ipairs(names) do
    local l = list(name)
    parts[i] = cjson.encode(name) .. ":" .. (#l == 0 and "[]" or cjson.encode(l))
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.print("{", table.concat(parts, ","), "}\n")
  return ngx.exit(ngx.OK)
end

routes["GET /oss/requests"] = function()
  if not state.oss() then return oss_off() end
  local since = ngx.var.arg_since
  if since and not since:find("^%d+$") then return bad("since must be a number") end
  return send_list(require("aliocr_emu.oss_store").requests(tonumber(since)))
end

routes["POST /reset"] = function()
  state.reset()
  if state.oss() then require("aliocr_emu.oss_store").reset() end
  return send(200, { ok = true })
end

function M.handle()
  local route = routes[ngx.req.get_method() .. " " .. ngx.var.uri]
  if not route then return send(404, { error = "no such control route" }) end
  return route()
end

return M
