-- The OSS endpoint's objects, kept per bucket and seen alike by every nginx
-- worker: each object's bytes in a file of its own under the scratch
-- directory (<oss dir>/<bucket>/<n>.obj, written whole, then renamed into
-- place), its metadata (key, size, ETag, Content-Type, Last-Modified, file)
-- in the shared dictionary emu_oss. Also the OSS request log, in the same
-- dictionary. A reset removes the files and empties the dictionary.
local cjson = require("cjson.safe")

local M = {}

local dict = ngx.shared.emu_oss

local function meta_key(bucket, key) return "obj:" .. bucket .. "\0" .. key end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

--- The metadata of an object, or nil.
function M.head(bucket, key)
  local json = dict:get(meta_key(bucket, key))
  return json and cjson.decode(json) or nil
end

--- An object's metadata and bytes, or nil when there is no such object.
function M.get(bucket, key)
  -- A PUT of the same key in another worker may replace the file between
  -- reading the metadata and opening the file: read again then.
  for _ = 1, 3 do
    local meta = M.head(bucket, key)
    if not meta then return nil end
    local data = read_file(meta.file)
    if data then return meta, data end
  end
  return nil
end

--- Stores `body` as `key` in `bucket` (the directory `dir` holds the
-- buckets' folders): returns the new metadata, or nil and why.
function M.put(dir, bucket, key, body, content_type, etag, md5)
  local n = dict:incr("file_seq", 1, 0)
  local path = string.format("%s/%s/%d.obj", dir, bucket, n)
  local tmp = path .. ".part"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(body)
  f:close()
  if not ok then
    os.remove(tmp)
    return nil, werr
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, rerr
  end
  local old = M.head(bucket, key)
  local meta = {
    key = key, size = #body, etag = etag, content_md5 = md5, content_type = content_type,
    last_modified = ngx.time(), file = path,
  }
  local set, serr = dict:set(meta_key(bucket, key), cjson.encode(meta))
  if not set then
    os.remove(path)
    return nil, serr
  end
  if old and old.file ~= path then os.remove(old.file) end
  return meta
end

--- Removes an object (if it is there): true when there was one.
function M.delete(bucket, key)
  local meta = M.head(bucket, key)
  if not meta then return false end
  dict:delete(meta_key(bucket, key))
  os.remove(meta.file)
  return true
end

--- The objects of `bucket`, sorted by key: a list of metadata.
function M.list(bucket)
  local prefix = "obj:" .. bucket .. "\0"
  local out = {}
  for _, k in ipairs(dict:get_keys(0)) do
    if k:sub(1, #prefix) == prefix then
      local json = dict:get(k)
      local meta = json and cjson.decode(json)
      if meta then out[#out + 1] = meta end
    end
  end
  table.sort(out, function(a, b) return a.key < b.key end)
  return out
end

-- The request log ---------------------------------------------------------

function M.log(entry, max)
  if max <= 0 then return end
  local seq = dict:incr("log_last", 1, 0)
  entry.seq = seq
  dict:set("log:" .. seq, cjson.encode(entry))
  local first = dict:get("log_first") or 1
  while seq - first >= max do
    dict:delete("log:" .. first)
    first = dict:incr("log_first", 1, 1)
  end
end

--- The logged OSS requests with a sequence number above `since`.
function M.requests(since)
  local out = {}
  local last = dict:get("log_last") or 0
  for seq = math.max(dict:get("log_first") or 1, (since or 0) + 1), last do
    local json = dict:get("log:" .. seq)
    if json then out[#out + 1] = cjson.decode(json) end
  end
  return out
end

--- Forgets every object (removing its file) and the request log.
function M.reset()
  for _, k in ipairs(dict:get_keys(0)) do
    if k:sub(1, 4) == "obj:" then
      local json = dict:get(k)
      local meta = json and cjson.decode(json)
      if meta then os.remove(meta.file) end
    end
  end
  dict:flush_all()
  dict:flush_expired()
end

return M
