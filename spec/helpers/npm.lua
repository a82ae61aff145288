-- Official SDKs from the npm registry, as independent judges (Aliyun's
-- ali-oss for OSS V4 signatures): installed once per tree into build/npm
-- (ignored by git, removed by `make clean`), pinned to a major version.
-- Specs that need one skip with the reason this returns when node or npm is
-- missing or the registry cannot be reached.
local sh = require("helpers.sh")

local M = {}

-- Pinned majors: a spec compares bytes with them, so a new major is a
-- deliberate change here.
M.PACKAGES = { "ali-oss@6" }

local DIR = "build/npm"

local function have(program)
  return select(2, sh.run("command -v " .. sh.q(program) .. " >/dev/null")) == 0
end

local installed -- true, or the reason it is not

--- Installs the judges (once per tree and run); returns the directory
-- whose node_modules holds them, or nil and why not.
function M.install()
  if installed == nil then
    if not have("node") or not have("npm") then
      installed = "node or npm is not installed"
    else
      -- Under a lock: the runtimes' runs go side by side (spec/run-all).
      local checks = {}
      for _, spec in ipairs(M.PACKAGES) do
        checks[#checks + 1] = "test -f " .. DIR .. "/node_modules/" .. (spec:match("^(.-)@") or spec) .. "/package.json"
      end
      local install = table.concat(checks, " && ") .. " || npm install --prefix " .. DIR ..
        " --no-audit --no-fund --ignore-scripts --loglevel=error " .. table.concat(M.PACKAGES, " ")
      local out, status = sh.run("mkdir -p " .. DIR .. " && flock " .. DIR .. "/.lock sh -c " .. sh.q(install))
      installed = status == 0 or "npm install failed (no registry?): " .. out:sub(1, 300)
    end
  end
  if installed == true then return DIR end
  return nil, installed
end

--- Runs a Node script (text) with the judges on its module path and `input`
-- (a string) on its stdin; returns its stdout and exit status.
function M.node(script, input)
  local dir = assert(M.install())
  local tmp = sh.tmpdir()
  sh.write_all(tmp .. "/script.js", script)
  sh.write_all(tmp .. "/input", input or "")
  local out, status = sh.run("NODE_PATH=" .. sh.q(dir .. "/node_modules") .. " node " .. sh.q(tmp .. "/script.js") ..
    " < " .. sh.q(tmp .. "/input") .. " 2>&1")
  os.execute("rm -rf " .. sh.q(tmp))
  return out, status
end

return M
