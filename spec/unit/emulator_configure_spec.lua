-- The emulator's configure step (emulator/configure/): nginx.conf comes from
-- a template with named placeholders, and a placeholder without a value (or
-- a value without a placeholder) is an error, not a silent blank.
package.path = "emulator/?.lua;" .. package.path
local template = require("configure.template")
local nginx_conf = require("configure.nginx_conf")

local function conf_options(extra)
  local o = {
    scratch = "/tmp/s", settings_file = "/tmp/s/settings.lua", lua_dir = "/e/lua", modules = "/m",
    images = "/e/images", url_host = "127.0.0.1", port = 8080, control_port = 8081, workers = 2,
    threads = 4, max_body = 128 * 1024 * 1024, is_root = false, verbose = false,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("the emulator's nginx.conf template", function()
  it("fills ${name} from a table: strings as they are, whole numbers as integers", function()
    assert.equal("listen 127.0.0.1:8080; a %1 b", template.fill("listen ${host}:${port}; a ${x} b",
      { host = "127.0.0.1", port = 8080, x = "%1" }))
    assert.equal("no placeholders", template.fill("no placeholders", {}))
    -- nginx's own variables ($name) are left alone.
    assert.equal("set $v $host;", template.fill("set $v $host;", {}))
  end)

  it("refuses a placeholder with no value, and a value with no placeholder", function()
    local ok, err = pcall(template.fill, "a ${port} ${host}", { port = 1 })
    assert.is_false(ok)
    assert.equal("template: no value for ${host}", err)
    ok, err = pcall(template.fill, "${port}", { port = 1, hots = "x", extra = 2 })
    assert.is_false(ok)
    assert.equal("template: no placeholder for extra, hots", err)
    ok, err = pcall(template.fill, "${port}", { port = true })
    assert.is_false(ok)
    assert.equal("template: no value for ${port}", err)
    -- Whatever stands between the braces is a name.
    for _, bad in ipairs({ "${}", "${a-b}", "${ port }" }) do
      ok, err = pcall(template.fill, "x " .. bad, { ["a-b"] = false })
      assert.is_false(ok)
      assert.equal("template: no value for " .. bad, err)
    end
  end)

  it("renders a configuration with every placeholder filled", function()
    local conf = nginx_conf.render(conf_options())
    assert.falsy(conf:find("${", 1, true))
    assert.truthy(conf:find("\nworker_processes 2;\n\npid \"/tmp/s/nginx.pid\";\n", 1, true))
    assert.truthy(conf:find("\nthread_pool aliocr_ocr threads=4;\n", 1, true))
    assert.truthy(conf:find("\n  client_max_body_size 134217728;\n  client_body_buffer_size 67108864;\n", 1, true))
    assert.truthy(conf:find("\n    listen 127.0.0.1:8080;\n\n    header_filter_by_lua_block", 1, true))
    assert.truthy(conf:find('\n  lua_package_path "/e/lua/?.lua;;";\n', 1, true))
    assert.truthy(conf:find('init([==[/tmp/s/settings.lua]==])', 1, true))
    assert.truthy(conf:find('location /images/ { alias "/e/images/"; }', 1, true))
    assert.truthy(conf:find("\n    listen 127.0.0.1:8081;\n    location / { content_by_lua_block " ..
      "{ require(\"aliocr_emu.control\").handle() } }", 1, true))
    assert.truthy(conf:find('\nerror_log "/tmp/s/logs/error.log" warn;\n', 1, true))
  end)

  it("adds root, a verbose log and the HTTPS listener when asked; quotes paths for nginx", function()
    local conf = nginx_conf.render(conf_options({
      is_root = true, verbose = true, url_host = "[::1]", https_port = 8443, http2 = true,
      tls = { cert = "/t/server.pem", key = '/t/a "b"\\c.key' }, scratch = "/tmp/s",
    }))
    assert.truthy(conf:find("\nworker_processes 2;\nuser root;\npid ", 1, true))
    assert.truthy(conf:find("\nerror_log stderr notice;\n", 1, true))
    assert.truthy(conf:find("\n    listen [::1]:8080;\n    listen [::1]:8443 ssl http2;\n" ..
      '    ssl_certificate "/t/server.pem";\n    ssl_certificate_key "/t/a \\"b\\"\\\\c.key";\n', 1, true))
    conf = nginx_conf.render(conf_options({ https_port = 8443, tls = { cert = "/c", key = "/k" } }))
    assert.truthy(conf:find("\n    listen 127.0.0.1:8443 ssl;\n", 1, true))
  end)

  it("adds the OSS endpoint's server block, its body limit and its HTTPS listener, only when asked", function()
    local conf = nginx_conf.render(conf_options())
    assert.falsy(conf:find("aliocr_emu.oss", 1, true))
    conf = nginx_conf.render(conf_options({ oss_port = 9000, oss_max_body = 64 * 1024 * 1024 }))
    assert.truthy(conf:find("\n    listen 127.0.0.1:9000;\n\n    client_max_body_size 67108864;\n" ..
      "    client_body_buffer_size 16777216;\n", 1, true))
    assert.truthy(conf:find('location / { content_by_lua_block { require("aliocr_emu.oss").handle() } }', 1, true))
    assert.truthy(conf:find("error_page 413 = @oss_too_large;", 1, true))
    assert.falsy(conf:find(" ssl", 1, true))
    -- HTTPS for OSS alone: the API's listener stays plain.
    conf = nginx_conf.render(conf_options({ oss_port = 9000, oss_max_body = 1000, oss_https_port = 9443,
      tls = { cert = "/c", key = "/k" } }))
    assert.truthy(conf:find("\n    listen 127.0.0.1:8080;\n\n    header_filter_by_lua_block", 1, true))
    assert.truthy(conf:find("\n    listen 127.0.0.1:9000;\n    listen 127.0.0.1:9443 ssl;\n", 1, true))
    assert.truthy(conf:find("\n    client_max_body_size 1000;\n    client_body_buffer_size 1000;\n", 1, true))
  end)
end)
