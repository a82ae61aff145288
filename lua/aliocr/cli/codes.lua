-- The exit statuses of bin/aliocr (its --help lists them).
return {
  OK = 0,            -- every image was read
  FAILED = 1,        -- some failed, or the results could not be written
  USAGE = 2,         -- a usage error: nothing was sent
  ACCOUNT = 3,       -- no credentials, or the gateway refused them or the quota
  INTERRUPTED = 130, -- SIGINT
}
