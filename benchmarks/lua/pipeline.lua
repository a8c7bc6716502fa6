-- wrk script: send DEPTH requests back to back on each connection, then wait
-- for all DEPTH responses before the next batch (HTTP/1.1 pipelining).
-- Usage: wrk -s pipeline.lua URL -- DEPTH      (DEPTH defaults to 16)
-- wrk counts the requests in the string request() returns once at start-up
-- and then expects that many responses per batch; each counts as one request.

init = function(args)
   local depth = tonumber(args[1]) or 16
   batch = string.rep(wrk.format(), depth)
end

request = function()
   return batch
end
