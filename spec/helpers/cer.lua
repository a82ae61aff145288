-- Character error rate: the edit distance (insertions, deletions and
-- substitutions of UTF-8 characters) between what was read and the truth,
-- divided by the truth's length. Before comparing, runs of white space
-- become one space, and a space next to a non-ASCII character is dropped:
-- Chinese has no spaces, and where an OCR puts them there is not an error.
-- Full-width ASCII forms (U+FF01 to U+FF5E: "：" "，" "（") count as their
-- ASCII twins, as Unicode's compatibility normalisation (NFKC) has it.
-- Runs on Lua 5.1 to 5.4 and LuaJIT (no utf8 library needed).
local M = {}

local CHAR = "[%z\1-\127\194-\244][\128-\191]*"

--- The text as compared: white space folded as above.
function M.normalize(s)
  -- U+FF01..U+FF5E is EF BC 81..EF BC BF and EF BD 80..EF BD 9E in UTF-8.
  s = s:gsub("\239\188([\129-\191])", function(c) return string.char(c:byte() - 0x60) end)
  s = s:gsub("\239\189([\128-\158])", function(c) return string.char(c:byte() - 0x20) end)
  s = s:gsub("\227\128\128", " ") -- U+3000, the ideographic space
  s = s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  -- A space with a non-ASCII byte (a lead or continuation byte) on either side.
  s = s:gsub("([\128-\255]) ", "%1"):gsub(" ([\128-\255])", "%1")
  return s
end

--- The characters of a string, as a list.
function M.chars(s)
  local out = {}
  for c in s:gmatch(CHAR) do out[#out + 1] = c end
  return out
end

--- The edit distance between two lists.
function M.distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a[i] == b[j] and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The character error rate of `got` against `truth`, and the edit count.
function M.rate(got, truth)
  local a, b = M.chars(M.normalize(got)), M.chars(M.normalize(truth))
  local d = M.distance(a, b)
  return d / math.max(1, #b), d
end

return M
