#!/usr/bin/env bash
# `make demo`: starts the local emulator on free ports, calls both OCR
# interfaces the way the README shows (curl, APPCODE auth), shows what a
# failed and a refused call look like, runs examples/basic.lua (the Lua
# client), shows what was billed, then stops the emulator. Nothing outlives
# the script.
set -eu
cd "$(dirname "$0")/.."

out=$(mktemp)
bin/aliocr-emulator --port 0 --appcode demo-code --quota 3 >"$out" 2>&1 &
emu=$!
cleanup() {
  kill -TERM "$emu" 2>/dev/null && { wait "$emu" 2>/dev/null || true; }
  rm -f "$out"
  return 0
}
trap cleanup EXIT

for _ in $(seq 1 200); do
  grep -qx ready "$out" && break
  kill -0 "$emu" 2>/dev/null || { cat "$out" >&2; exit 1; }
  sleep 0.05
done
value() { awk -v k="$1" '$1 == k { print $2 }' "$out"; }
endpoint=$(value endpoint)
control=$(value control)
image="$(value images)sample.png"
auth="Authorization: APPCODE demo-code"

step() { printf '\n== %s\n' "$*"; }

step "the emulator is up"
cat "$out"

step "an image that is not there: HTTP 666 and ok=0, not billed"
curl -sS -o /dev/stdout -w '\nHTTP %{http_code}\n' -H "$auth" \
  --data-urlencode "url=$endpoint/images/missing.png" "$endpoint/ocr/advanced"

step "interface one (advanced), data as one string: POST url=<image>"
curl -sS -H "$auth" --data-urlencode "url=$image" "$endpoint/ocr/advanced"; echo

step "interface one with show=1: data as an array of {words} (a GET query this time)"
curl -sS -G -H "$auth" --data-urlencode "url=$image" -d show=1 "$endpoint/ocr/advanced"; echo

step "interface two (handwriting): {position, words} per line"
curl -sS -H "$auth" --data-urlencode "url=$image" "$endpoint/ocr/handwriting"; echo

step "a wrong AppCode: the gateway answers in headers"
curl -sS -o /dev/null -D - -H "Authorization: APPCODE wrong" \
  --data-urlencode "url=$image" "$endpoint/ocr/advanced" | grep -iE '^(HTTP|x-ca-)'

step "the quota was 3 billed calls: the next call is refused"
curl -sS -o /dev/null -D - -H "$auth" --data-urlencode "url=$image" "$endpoint/ocr/advanced" |
  grep -iE '^(HTTP|x-ca-error)'

step "the same with the Lua client: examples/basic.lua (the quota lifted first)"
curl -sS -o /dev/null -d '{"quotas":{"demo-code":false}}' "$control/settings"
LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" ALIOCR_APPCODE=demo-code ALIOCR_ENDPOINT="$endpoint" \
  lua5.4 examples/basic.lua "$image"

step "what the emulator billed (its control endpoint: GET /ledger)"
curl -sS "$control/ledger"
