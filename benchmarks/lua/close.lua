-- wrk script: every request asks for "Connection: close", so the server closes
-- each connection after one response and wrk reconnects: this measures
-- accept + one request + close, not keep-alive.
-- Usage: wrk -s close.lua URL

wrk.headers["Connection"] = "close"
