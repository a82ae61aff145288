-- bin/aliocr's progress bar on stderr: "[####......] done/total (N failed)",
-- redrawn in place, cleared before anything else is printed.
local M = {}

local WIDTH = 30

local Bar = {}
Bar.__index = Bar

--- A bar for `total` images on the file `stderr`; one that is not `shown`
-- draws nothing.
function M.new(stderr, total, shown)
  return setmetatable({ err = stderr, total = total, shown = shown and true or false }, Bar)
end

--- Draws the bar: `done` images of the total, `failed` of them failed.
function Bar:draw(done, failed)
  if not self.shown then return end
  local filled = math.floor(WIDTH * done / self.total)
  self.err:write(string.format("\r[%s%s] %d/%d%s", string.rep("#", filled), string.rep(".", WIDTH - filled),
    done, self.total, failed > 0 and string.format(" (%d failed)", failed) or ""))
  self.err:flush()
end

--- Erases the bar's line (and flushes stderr when `flush`).
function Bar:clear(flush)
  if not self.shown then return end
  self.err:write("\r\27[K")
  if flush then self.err:flush() end
end

return M
