-- The vendor's side of a call, behind the gateway: checks the parameters the
-- way the API guide describes, fetches the image (loopback only), and asks
-- the backend for the text. Failures are HTTP 666 with {"ok":0,"msg":...},
-- which the gateway does not bill.
local cjson = require("cjson.safe")
local fetch = require("aliocr_emu.fetch")
local canned = require("aliocr_emu.canned")
local tesseract = require("aliocr_emu.tesseract")

local M = {}

M.FAIL = 666

local function fail(msg)
  return M.FAIL, '{"ok":0,"msg":' .. cjson.encode(msg) .. '}'
end
M.fail = fail

local function first(v)
  if type(v) == "table" then v = v[1] end
  if v == true then v = "" end
  return v
end

--- Answers one call: returns the HTTP status and the JSON body, or nil and
-- "timeout" when the backend took `budget_ms` (what is left of the
-- gateway's backend timeout) or more. `api` is "advanced" or "handwriting",
-- `params` the decoded parameters, `s` the settings in force.
function M.answer(api, params, s, budget_ms)
  local url = first(params.url)
  if url == nil or url == "" then return fail("url参数不能为空") end
  local show = first(params.show)
  if show ~= nil and show ~= "" and show ~= "0" and show ~= "1" then
    return fail("show参数错误，可选值为0或1")
  end
  if #url > 1024 then return fail("图片地址过长，不能超过1024字节") end
  local u, why = fetch.parse(url)
  if not u then return fail("图片地址格式错误：" .. why) end
  if u.host:find("%.invalid$") or u.host == "invalid" then
    return fail("图片下载失败：无法解析域名")
  end
  local bytes
  if s.fetch then
    local err
    bytes, err = fetch.get(u)
    if not bytes then return fail("图片下载失败：" .. err) end
    if not fetch.image_format(bytes) then
      return fail("图片格式错误，仅支持jpg、png、bmp、gif")
    end
  end
  if s.backend ~= "tesseract" then return 200, canned.recognize(api, show) end
  if not bytes then return fail("图片下载失败：the emulator does not fetch images (fetch is off)") end
  local lines, failure = tesseract.lines(bytes, s, (budget_ms or s.backend_timeout_ms) / 1000)
  if failure == "timeout" then return nil, failure end
  if not lines then return fail("图片解码失败：the image could not be read (" .. failure .. ")") end
  return 200, tesseract.body(api, show, lines)
end

return M
