-- Reads many images at once with client:batch: bounded concurrency, a
-- progress line, results in input order, and a summary of what was billed.
--
--   ALIOCR_APPCODE=<code> ALIOCR_ENDPOINT=http://127.0.0.1:8080 \
--     lua5.4 examples/batch.lua URL...        (or the URLs on stdin, one per line)
local aliocr = require("aliocr")

local urls = {}
for i = 1, #arg do urls[#urls + 1] = arg[i] end
if #urls == 0 then
  for line in io.lines() do
    if line:find("%S") then urls[#urls + 1] = line:match("^%s*(.-)%s*$") end
  end
end

local client = aliocr.new({ concurrency = 8 })
local results, summary = client:batch("recognize", urls, {
  on_progress = function(done, total)
    io.stderr:write(string.format("\r%d/%d", done, total))
  end,
})
io.stderr:write("\n")

for i, r in ipairs(results) do
  if aliocr.is_error(r) then
    print(i, urls[i], "error: " .. tostring(r))
  else
    print(i, urls[i], (r.text:gsub("\n", " / ")))
  end
end
print(string.format("%d images: %d read, %d failed, %d billed, %.2f s",
  summary.total, summary.ok, summary.failed, summary.billed, summary.elapsed))
client:close()
