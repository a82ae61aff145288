-- The command line of bin/aliocr: its options, its --help text, and the
-- checks of the numbers it takes. aliocr.cli runs what this reads.
local argparse = require("argparse")

local M = {}

local DESCRIPTION = "Read the text of images through the Aliyun marketplace OCR API."

local EPILOG = [[
Images come from the arguments, from --file, or (when there are neither
and stdin is not a terminal) one per line from stdin; empty lines and lines
starting with # are skipped. Each is an image URL, or, without a scheme
(no "://"), a local image file, which is uploaded to OSS, read through a
presigned URL and deleted after: set ALIOCR_OSS_ENDPOINT, ALIOCR_OSS_BUCKET
(ALIOCR_OSS_REGION unless the endpoint names it, ALIOCR_OSS_PREFIX) and the
AccessKey in ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET
(with ALIBABA_CLOUD_SECURITY_TOKEN for STS). Results are printed in
input order. A URL that is not http(s), or a file without OSS configured, stops
the run before anything is sent; it is named by where it came from:
"argument N" (the Nth argument), "FILE:LINE" or "stdin:LINE" (lines counted
from 1, skipped ones included). A file that is missing, empty, too large
or not an image is an error of its own (kind "image"); an upload OSS
refused, of kind "storage"; neither reaches the service.

Credentials come from the environment only (never the command line, where
other users can read them): ALIOCR_APPCODE, or ALIOCR_APP_KEY and
ALIOCR_APP_SECRET. The interface URLs: --advanced-url / --handwriting-url,
else --endpoint, else ALIOCR_ADVANCED_URL / ALIOCR_HANDWRITING_URL, else
ALIOCR_ENDPOINT.

Output (-o): text (each image's text; with several images, each under a
"==> URL <==" line), json (one JSON object per line and image: {"url", "result"}
or {"url", "error"}), tsv (a header, then one row per line of text: image,
line, left, top, width, height, words). Errors go to stderr in text and tsv.

Interrupt (SIGINT, Ctrl-C): nothing more is sent, the calls under way are
cancelled, and every result had by then is printed; each other image is
reported as an error of kind "cancelled", with billed null (unknown) if its
request was under way, else false (never sent, or waiting for a retry after
failures not billed). stderr ends with one line: how many were answered,
cancelled in flight, and not sent.

Journal (--journal FILE): each image's outcome is appended to FILE as a
JSON line as soon as it is known (flushed; a torn last line, as a crash
leaves, is ignored and cut away; a bad line before it is a usage error
naming the line): {image, interface, outcome ("result" or "error"),
billed, kind, request_id, text, ...}, kept per interface. Rerun with the
same FILE: an image it has done (a result, or an error that was billed)
is not sent, and its journaled outcome is printed as if new; one
whose billing is unknown (sent, no answer) is listed on stderr and not sent
again unless --retry-unknown. Each image is journaled as sent (billing
unknown) before it is handed over: one in flight when the tool is killed is
unknown, not resent. An image whose outcome was not billed (a refusal, an
interrupt, --max-billed) has no outcome: a rerun sends it. stderr ends with a summary: what this run billed
and what the journal holds (done, billed, unknown). On an interrupt, the
calls cancelled in flight are journaled with billing unknown.

Exit status: 0 every image was read; 1 some failed; 2 usage error;
3 credentials or quota: none configured, or the gateway refused them
(an auth or quota error; the images not sent by then are not sent, and are
reported as errors of kind "cancelled"); 1 also when the results cannot be
written to stdout (nothing more is sent; stderr says what was lost);
130 interrupted. When several apply: 130, then 1 for results not written,
then 3.]]

-- A parser of its own for each command line (argparse's parsers keep
-- state). -h/--help is the tool's own flag in the place argparse's would
-- take, so that asking for help returns instead of exiting the process:
-- `on_help` is called, then the parse is stopped by an error.
local function new_parser(on_help)
  local parser = argparse("aliocr", DESCRIPTION)
  parser:add_help(false)
  parser:flag("-h --help", "Show this help message and exit."):action(function()
    on_help()
    error("aliocr: --help", 0)
  end)
  parser:epilog(EPILOG)
  parser:argument("urls", "Image URLs or local image files."):args("*")
  parser:option("-f --file", "Read images (URLs or files) from this file, one per line (- for stdin).")
  parser:flag("--handwriting", "Use interface two (handwriting, with line positions) instead of one.")
  parser:option("--show", "The API's display mode parameter (interface one: 0 or absent gives the text " ..
    "as one string, 1 as lines).")
  parser:option("-o --output", "Output format: text, json or tsv.", "text"):choices({ "text", "json", "tsv" })
  parser:option("-c --concurrency", "Images read at once.", "8")
  parser:option("--endpoint", "Base URL of the API (the emulator's paths are added).")
  parser:option("--advanced-url", "Full URL of interface one.")
  parser:option("--handwriting-url", "Full URL of interface two.")
  parser:option("--timeout", "Seconds for one attempt.", "10")
  parser:option("--retries", "Further attempts after a failure that was not billed.", "2")
  parser:option("--max-billed", "Bill at most N calls: the image that would go over is not sent " ..
    "(an error of kind budget), nor any after it; attempts whose billing is unknown count.")
  parser:option("--qps", "Send at most N attempts per second (retries included), paced evenly.")
  parser:flag("--adaptive-rate", "Find the app's rate limit: slow down when the gateway throttles, " ..
    "speed up again while calls pass (never above --qps, if given).")
  parser:option("--journal", "Journal file: each image's outcome is appended to it as it happens; " ..
    "a rerun with it does not send the images it has done (see below).")
  parser:flag("--retry-unknown", "With --journal: send again the images whose billing the journal has " ..
    "as unknown.")
  parser:option("--ca-file", "CA bundle to verify the server with.")
  parser:flag("--insecure", "Do not verify the server's TLS certificate (tests only).")
  parser:mutex(
    parser:flag("--progress", "Show a progress bar on stderr (default: when stderr is a terminal and " ..
      "there is more than one image)."),
    parser:flag("--no-progress", "Never show the progress bar.")
  )
  return parser
end

-- A number option: nil and the usage message unless positive (and whole
-- when `integer`). Lua 5.1 and LuaJIT read "nan" as a number: not one here.
local function number_option(name, value, integer)
  local n = tonumber(value)
  if not n or n ~= n or n <= 0 or (integer and n ~= math.floor(n)) then
    return nil, string.format("--%s must be a %s, got '%s'", name,
      integer and "whole number >= 1" or "positive number", value)
  end
  return n
end

--- Reads the command line `argv` (a list of strings). Returns the options
-- (argparse's names: urls, file, handwriting, show, output, endpoint,
-- advanced_url, handwriting_url, ca_file, insecure, progress, no_progress, journal, retry_unknown;
-- adaptive_rate; concurrency, timeout, retries, qps and max_billed as numbers); or `{ help = text }` when
-- -h/--help came before any mistake; or nil and a usage message.
function M.parse(argv)
  local help
  local parser
  parser = new_parser(function() help = parser:get_help() end)
  local ran, parsed, args = pcall(parser.pparse, parser, argv or {})
  if help then return { help = help } end
  if not ran then error(parsed, 0) end
  if not parsed then return nil, args end

  local msg
  args.concurrency, msg = number_option("concurrency", args.concurrency, true)
  if not args.concurrency then return nil, msg end
  args.timeout, msg = number_option("timeout", args.timeout)
  if not args.timeout then return nil, msg end
  local retries = tonumber(args.retries)
  if not retries or retries < 0 or retries ~= math.floor(retries) then
    return nil, "--retries must be a whole number >= 0, got '" .. args.retries .. "'"
  end
  args.retries = retries
  if args.qps ~= nil then
    local given = args.qps
    args.qps, msg = number_option("qps", given)
    if not args.qps then return nil, msg end
    -- (rate_limit.qps's bound, said in this tool's terms.)
    if args.qps > 1e6 then return nil, "--qps must be at most 1000000, got '" .. given .. "'" end
  end
  if args.retry_unknown and not args.journal then return nil, "--retry-unknown needs --journal" end
  if args.max_billed ~= nil then
    local n = tonumber(args.max_billed)
    if not n or n ~= n or n < 0 or n ~= math.floor(n) or n > 2^53 then
      return nil, "--max-billed must be a whole number >= 0, got '" .. args.max_billed .. "'"
    end
    args.max_billed = n
  end
  return args
end

return M
