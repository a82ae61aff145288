-- The OSS V4 signer (src/oss.c, core.oss_signer) against Aliyun's official
-- Node.js SDK, ali-oss (6.x, installed from npm by spec/helpers/npm.lua),
-- for the same inputs: the same AccessKey, secret and STS token, region,
-- bucket, object names (awkward ones among them), query, headers and time
-- (Date is fixed inside the Node script). ali-oss computes
--   (a) presigned V4 URLs with client.signatureUrlV4, whose query must be
--       aliocr's presign() byte for byte (and pair for pair, decoded);
--   (b) V4 Authorization headers with client.authorizationV4 (its V4
--       header signing entry), which must be aliocr's headers().authorization;
--       its canonical request and string to sign (signUtils) must be
--       aliocr's explain(); and, where the request names its Content-Type
--       (so that ali-oss guesses none from the object name), the headers of
--       the request ali-oss would send (its createRequest) must carry the
--       same x-oss-date, x-oss-content-sha256, x-oss-security-token and
--       Authorization as the table aliocr returns.
-- The inputs are generated deterministically (a Park-Miller generator with
-- a fixed seed): the same sets every run. Skips when node or npm is missing
-- or the registry cannot be reached.
--
-- Where ali-oss departs from OSS's documentation the inputs keep out of its
-- way, on purpose: it sorts the canonical query with localeCompare (the
-- documentation: by encoded name, byte order; the names here sort the same
-- either way), and it leaves ! ' ( ) * unencoded in a presigned URL's query
-- (Node's querystring; no value here has them: aliocr encodes them, as the
-- canonical query does, and OSS decodes both the same).
local cjson = require("cjson")
local core = require("aliocr.core")
local npm = require("helpers.npm")

local JUDGE = [==[
'use strict';
// Fixed time: every Date made without arguments is `now` (ms).
const RealDate = Date;
let now = 0;
class FixedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(now);
    else super(...args);
  }
  static now() { return now; }
}
global.Date = FixedDate;
console.warn = () => {}; // ali-oss advises a token refresher on stderr
const OSS = require('ali-oss');
const signUtils = require('ali-oss/lib/common/signUtils');
const { createRequest } = require('ali-oss/lib/common/utils/createRequest');
const { encodeString } = require('ali-oss/lib/common/utils/encodeString');
const dateFormat = require('dateformat');

function ordered(map) {
  // The caller's query in the order of its encoded names (aliocr writes
  // them so); false stands for a bare name (null to ali-oss).
  const out = {};
  Object.keys(map).sort((a, b) => (encodeString(a) < encodeString(b) ? -1 : 1))
    .forEach(k => { out[k] = map[k] === false ? null : map[k]; });
  return out;
}

async function judge(c) {
  now = c.when * 1000;
  const key = c.key === null ? undefined : c.key;
  const client = new OSS({
    region: 'oss-' + c.region, accessKeyId: c.id, accessKeySecret: c.secret,
    stsToken: c.token === null ? undefined : c.token, bucket: c.bucket, authorizationV4: true,
  });
  const queries = ordered(c.query);
  if (c.expires !== null) {
    const url = await client.signatureUrlV4(c.method, c.expires, { headers: c.headers, queries }, key);
    return { query: url.slice(url.indexOf('?') + 1) };
  }
  const headers = Object.assign({}, c.headers);
  headers['x-oss-date'] = dateFormat(new Date(), "UTC:yyyymmdd'T'HHMMss'Z'");
  headers['x-oss-content-sha256'] = 'UNSIGNED-PAYLOAD';
  if (c.token !== null) headers['x-oss-security-token'] = c.token;
  const r = {
    authorization: client.authorizationV4(c.method, { headers, queries }, c.bucket, key),
    canonical: signUtils.getCanonicalRequest(c.method, { headers, queries }, c.bucket, key),
  };
  r.to_sign = signUtils.getStringToSign(c.region, headers['x-oss-date'], r.canonical);
  if (c.headers['Content-Type'] !== undefined || c.headers['content-type'] !== undefined) {
    const subres = {};
    const query = {};
    Object.keys(queries).forEach(k => {
      if (queries[k] === null) subres[k] = '';
      else query[k] = queries[k];
    });
    const sent = createRequest.call(client, {
      method: c.method, bucket: c.bucket, object: key, headers: Object.assign({}, c.headers), subres, query,
    }).params.headers;
    r.sent = {};
    ['authorization', 'x-oss-date', 'x-oss-content-sha256', 'x-oss-security-token'].forEach(k => {
      if (sent[k] !== undefined) r.sent[k] = sent[k];
    });
  }
  return r;
}

(async () => {
  const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const out = [];
  for (const c of cases) out.push(await judge(c));
  process.stdout.write('RESULT ' + JSON.stringify(out) + '\n');
})().catch(e => {
  process.stdout.write('ERROR ' + e.stack + '\n');
  process.exit(1);
});
]==]

-- A Park-Miller generator (exact in doubles on every runtime).
local function generator(seed)
  local x = seed
  return function(n) -- 1..n
    x = x * 16807 % 2147483647
    return x % n + 1
  end
end

local REGIONS = { "cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1", "us-west-1", "eu-central-1" }
local BUCKETS = { "aliocr-test", "examplebucket", "b-1-x", "ocr-uploads-2026" }
local KEYS = {
  "shot.png", "dir/sub dir/шот.png", "a+b=c&d.jpg", "~tilde/x-y_z.gif", "uploads/2026/12/01/e4f3.webp",
  "中文/图片 1.png", "space  two.bmp", "semi;colon,comma$@.png", "percent%20literal.png", "hash#q?.png",
  "emoji😀.png", "trailing/", "a/b/c/d/e/f/g", "(paren)[bracket]{brace}!*'.jpeg", "Ünïcödé/ñ.png",
}
local QUERY = {
  { "response-content-type", "image/png" },
  { "response-content-disposition", "inline; filename=\"a b.png\"" },
  { "versionId", "CAEQNhiBgMDJoJTK1RciIGQ1ZjYxMzc5YjU4NDRiZDY5YTY5ZWZkNTdiMjBkNTI3" },
  { "x-oss-process", "image/resize,w_100/quality,q_90" },
  { "uploads", false },
  { "acl", false },
  { "partNumber", "3" },
  { "uploadId", "0004B9894A22E5B1888A1E29F8230000" },
  { "response-cache-control", "no-cache, max-age=0" },
  { "tagging", false },
  { "response-expires", "中文 值" },
}
local EXPIRES = { 1, 60, 300, 900, 3600, 86400, 604800 }
local TYPES = { "image/png", " image/jpeg  ", "application/octet-stream", "image/webp; charset=binary" }

local function pick(rand, list) return list[rand(#list)] end

local function credentials(rand, i)
  local token = nil
  if rand(2) == 1 then
    token = "CAIS" .. string.rep("EgJ1c2VyLXRva2Vu", rand(4)) .. "+/=" .. i .. "GhMTRVHb3Jk+Kz=="
  end
  return "LTAI5tAliocr" .. i, "aliocr+test/secret=" .. i .. string.rep("x", rand(20)), token
end

local function query(rand)
  local q, n = {}, rand(4) - 1
  for _ = 1, n do
    local p = pick(rand, QUERY)
    q[p[1]] = p[2]
  end
  return q
end

-- The sets: presigned URLs (expires given) and header signatures.
local function cases()
  local rand = generator(20261201)
  local out = {}
  for i = 1, 64 do
    local presign = i % 2 == 1
    local id, secret, token = credentials(rand, i)
    local c = {
      id = id, secret = secret, token = token, region = pick(rand, REGIONS), bucket = pick(rand, BUCKETS),
      key = rand(8) == 1 and cjson.null or pick(rand, KEYS),
      when = 1764547200 + rand(86400 * 400), -- 2025-12-01 and the 400 days after
      query = query(rand), headers = {},
    }
    if presign then
      c.method = pick(rand, { "GET", "GET", "GET", "PUT", "HEAD" })
      c.expires = pick(rand, EXPIRES)
      if c.method == "PUT" and rand(2) == 1 then c.headers["Content-Type"] = "image/png" end
    else
      c.method = pick(rand, { "PUT", "PUT", "GET", "DELETE", "HEAD", "POST" })
      if c.method == "PUT" or rand(3) == 1 then
        c.headers[rand(2) == 1 and "Content-Type" or "content-type"] = pick(rand, TYPES)
      end
      if rand(2) == 1 then c.headers["Content-MD5"] = core.md5_base64("body " .. i) end
      if rand(2) == 1 then c.headers["x-oss-meta-author"] = "  Alice  B. " .. i .. " " end
      if rand(2) == 1 then c.headers["X-Oss-Meta-Note"] = "two  spaces\there" end
      if rand(3) == 1 then c.headers["x-oss-object-acl"] = "private" end
      if rand(3) == 1 then c.headers["X-OSS-Storage-Class"] = "Standard" end
      if rand(3) == 1 then c.headers["x-oss-forbid-overwrite"] = "true" end
      -- unsigned by both: not content-type, content-md5 nor x-oss-*
      if rand(2) == 1 then c.headers["Cache-Control"] = "no-cache" end
      if rand(2) == 1 then c.headers["Content-Disposition"] = "attachment; filename=\"a.png\"" end
      if rand(2) == 1 then c.headers["Content-Length"] = tostring(rand(100000)) end
    end
    out[i] = c
  end
  return out
end

local function aliocr(c)
  local s = core.oss_signer({ access_key_id = c.id, access_key_secret = c.secret, security_token = c.token,
                              region = c.region })
  local key = c.key ~= cjson.null and c.key or nil
  local q = {}
  for k, v in pairs(c.query) do q[k] = v == false and true or v end
  local r = {}
  if c.expires then
    r.query = s:presign(c.method, c.bucket, key, c.expires, c.when, q, c.headers)
  else
    r.headers = s:headers(c.method, c.bucket, key, c.headers, q, c.when)
    r.canonical, r.to_sign = s:explain(c.method, c.bucket, key, c.headers, q, c.when)
  end
  s:close()
  return r
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- The decoded pairs of a query string, name -> value.
local function pairs_of(q)
  local t, n = {}, 0
  for part in q:gmatch("[^&]+") do
    local k, v = part:match("^([^=]*)=?(.*)$")
    t[unescape(k)] = unescape(v)
    n = n + 1
  end
  return t, n
end

local function token_free(s, token)
  return token == nil or not s:find(token, 1, true)
end

describe("the OSS V4 signer against ali-oss", function()
  local CASES = cases()
  local results, why

  local function judged()
    if results == nil and why == nil then
      local dir, reason = npm.install()
      if not dir then
        why = reason
      else
        local input = {}
        for i, c in ipairs(CASES) do
          input[i] = { id = c.id, secret = c.secret, token = c.token or cjson.null, region = c.region,
                       bucket = c.bucket, key = c.key, when = c.when, expires = c.expires or cjson.null,
                       method = c.method, query = c.query, headers = c.headers }
        end
        local out, status = npm.node(JUDGE, cjson.encode(input))
        local line = out:match("RESULT ([^\n]*)")
        assert(status == 0 and line, "the Node judge failed: " .. out:sub(1, 2000))
        results = cjson.decode(line)
      end
    end
    return results, why
  end

  it("has at least 20 input sets of each kind, with and without a token, bucket-level and not", function()
    local counts = { presign = 0, header = 0, token = 0, none = 0, bucket = 0 }
    for _, c in ipairs(CASES) do
      local kind = c.expires and "presign" or "header"
      counts[kind] = counts[kind] + 1
      counts[c.token and "token" or "none"] = counts[c.token and "token" or "none"] + 1
      if c.key == cjson.null then counts.bucket = counts.bucket + 1 end
    end
    assert.is_true(counts.presign >= 20 and counts.header >= 20, cjson.encode(counts))
    assert.is_true(counts.token >= 10 and counts.none >= 10 and counts.bucket >= 2, cjson.encode(counts))
  end)

  for i, c in ipairs(CASES) do
    local what = ("set %d: %s %s %s/%s%s"):format(i, c.expires and "presigned" or "header-signed", c.method,
      c.bucket, c.key == cjson.null and "" or c.key, c.token and ", with a token" or "")
    it(what, function()
      local judge, reason = judged()
      if not judge then
        pending(reason)
        return
      end
      local want, got = judge[i], aliocr(c)
      if c.expires then
        local wp, wn = pairs_of(want.query)
        local gp, gn = pairs_of(got.query)
        assert.same(wp, gp)
        assert.equal(wn, gn)
        assert.equal(want.query, got.query)
        assert.equal("x-oss-signature", got.query:match("&([^&=]+)=[^&]*$"))
      else
        assert.equal(want.authorization, got.headers.authorization)
        assert.equal(want.canonical, c.token and got.canonical:gsub("<security%-token>", c.token) or got.canonical)
        assert.equal(want.to_sign, got.to_sign)
        assert.is_true(token_free(got.canonical, c.token), "explain shows no token")
        if want.sent then
          assert.same(want.sent, got.headers)
        end
      end
    end)
  end

  it("compared the request ali-oss would send for a good part of the header-signed sets", function()
    local judge, reason = judged()
    if not judge then
      pending(reason)
      return
    end
    local sent = 0
    for i, c in ipairs(CASES) do
      if not c.expires and judge[i].sent then sent = sent + 1 end
    end
    assert.is_true(sent >= 10, "sets compared with ali-oss's createRequest: " .. sent)
  end)
end)
