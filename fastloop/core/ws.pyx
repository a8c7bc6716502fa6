# WebSockets (RFC 6455) and permessage-deflate (RFC 7692): the protocol engine a connection
# runs after an upgrade, as plain C over caller-owned buffers, and a Python view for tests.
#
#   ws.pxd            the structs and constants, zlib and ws_sha1.h declared once
#   ws_sha1.h         SHA-1 and base64 for Sec-WebSocket-Accept
#   ws_handshake.pyx  the upgrade request's checks, the accept value, subprotocol and
#                     permessage-deflate negotiation, the 101 and 426 answers
#   ws_utf8.pyx       the incremental UTF-8 validator (a DFA), failing at the first bad byte
#   ws_frame.pyx      the incremental frame parser and the frame writer
#   ws_deflate.pyx    inflating received messages (bounded) and deflating sent ones
#   ws_view.pyx       WsParser, WsDeflater and helpers: the engine driven from Python (tests)
#
# A connection's read path: fl_ws_parse() on the bytes read, until FL_WS_EV_NONE; each DATA
# event is a piece of a message in the read buffer (compressed pieces go through
# fl_ws_inflate_begin/step); PING is answered with fl_ws_write_control(FL_WS_PONG); CLOSE is
# echoed with fl_ws_write_close(); ERROR is answered with fl_ws_write_close(ev.code) and the
# connection closed. Everything is nogil and returns 0 or -code; nothing here owns a socket.

include "ws.pxd"
include "ws_utf8.pyx"
include "ws_frame.pyx"
include "ws_handshake.pyx"
include "ws_deflate.pyx"
include "ws_view.pyx"
