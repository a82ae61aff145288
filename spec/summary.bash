# Sourced by spec/run-all and spec/run-split: the "N passed, N failed"
# summary lines of spec/run's logs, added up in $passed and $failed.

# summary_of LOG: the last summary line of LOG ("0 passed, 1 failed" when
# the run printed none: it did not finish).
summary_of() {
  local last
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
  echo "${last:-0 passed, 1 failed}"
}

# add_up LINE: adds the counts of a summary line to $passed and $failed.
add_up() {
  local p=${1%% passed*} f=${1#*, }
  f=${f%% failed}
  passed=$((passed + p))
  failed=$((failed + f))
}
