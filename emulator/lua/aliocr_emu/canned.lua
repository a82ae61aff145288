-- The canned OCR backend: it answers the vendor's example bodies from the API
-- guide (../shared/seed), whatever the image shows. Interface one picks its
-- shape by `show`: absent, empty or "0" gives `data` as one string, "1"
-- gives `data` as an array of {words}. Interface two always gives
-- {position, words} per line.
local M = {}

-- luacheck: no max line length

M.advanced_text = [[{"ok":1,"msg":"查询成功","data":"冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"}]]

M.advanced_lines = [[{"ok":1,"msg":"查询成功","data":[{"words":"冰心散文精选"},{"words":"*****"},{"words":"在草地上，和着最柔媚的琴声跳舞。到了酣畅处，自己觉得是个羽"}]}]]

M.handwriting = [[{"ok":1,"msg":"查询成功","data":[]] ..
  [[{"position":{"top":41,"left":65,"width":236,"height":78},"words":"拇指云软件"},]] ..
  [[{"position":{"top":141,"left":68,"width":258,"height":76},"words":"作品著作权"},]] ..
  [[{"position":{"top":231,"left":59,"width":417,"height":90},"words":"聚合版权服务专家"},]] ..
  [[{"position":{"top":331,"left":76,"width":310,"height":86},"words":"400-181-0600"}]}]]

--- The JSON body for a recognised image: `api` is "advanced" or
-- "handwriting", `show` the caller's display mode (already checked).
function M.recognize(api, show)
  if api == "handwriting" then return M.handwriting end
  if show == "1" then return M.advanced_lines end
  return M.advanced_text
end

return M
