-- The emulator's test CA and the server certificate it signs (openssl, EC
-- P-256), made once in a directory and kept there while its three files
-- exist.
local files = require("configure.files")

local M = {}

--- The CA and server certificate in `dir` (made when missing) for a server
-- on `host`: { ca, cert, key } (paths), or nil and the command that failed.
function M.ensure(dir, host)
  local ok, err = files.run("mkdir -p " .. files.quote(dir))
  if not ok then return nil, err end
  local tls = { ca = dir .. "/ca.pem", cert = dir .. "/server.pem", key = dir .. "/server.key" }
  if files.exists(tls.ca) and files.exists(tls.cert) and files.exists(tls.key) then return tls end

  local q = function(name) return files.quote(dir .. "/" .. name) end
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local steps = {
    "openssl req -x509 " .. ec .. " -keyout " .. q("ca.key") .. " -out " .. q("ca.pem") ..
      " -days 3650 -subj '/CN=aliocr-emulator test CA'" ..
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
    "openssl req " .. ec .. " -keyout " .. q("server.key") .. " -out " .. q("server.csr") ..
      " -subj '/CN=localhost'",
    -- DNS:127.0.0.1 too: nginx's own sockets (aliocr inside nginx) check
    -- the name with X509_check_host, which reads no IP entry.
    function()
      return files.write(dir .. "/server.ext", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" ..
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,DNS:127.0.0.1" ..
        ((host ~= "127.0.0.1" and host ~= "::1") and (",IP:" .. host) or "") .. "\n")
    end,
    "openssl x509 -req -in " .. q("server.csr") .. " -CA " .. q("ca.pem") .. " -CAkey " ..
      q("ca.key") .. " -CAcreateserial -days 825 -sha256 -extfile " .. q("server.ext") ..
      " -out " .. q("server.pem"),
    "rm -f " .. q("server.csr") .. " " .. q("server.ext") .. " " .. q("ca.srl"),
  }
  for _, step in ipairs(steps) do
    if type(step) == "function" then
      ok, err = step()
    else
      ok, err = files.run(step)
    end
    if not ok then return nil, err end
  end
  return tls
end

return M
