/* wskey.h - the RFC 6455 section 4 handshake key: Sec-WebSocket-Accept is
 * base64(SHA-1(Sec-WebSocket-Key + the protocol's GUID)), for the load generator (the server's
 * handshake is core/ws_handshake.pyx). SHA-1 and base64 themselves are ws_sha1.h's: one copy.
 *
 *   void   fl_sha1(const uint8_t *p, size_t n, uint8_t out[20])           (ws_sha1.h)
 *   size_t fl_base64(const unsigned char *in, size_t n, char *out)
 *       writes 4 * ceil(n / 3) characters (padded with '='), no NUL; returns that count
 *   void   fl_ws_accept(const char *key, size_t n, char out[28])
 *       the Sec-WebSocket-Accept value for key[0..n) (28 characters, no NUL); keys are 24
 *       characters (16 bytes in base64), and one longer than FL_WS_KEY_MAX gives 28 '?'.
 */
#ifndef FL_WSKEY_H
#define FL_WSKEY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ws_sha1.h"

#define FL_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define FL_WS_ACCEPT_LEN 28
#define FL_WS_KEY_MAX 128

static inline size_t fl_base64(const unsigned char *in, size_t n, char *out)
{
    return fl_base64_encode(in, n, out);
}

static inline void fl_ws_accept(const char *key, size_t n, char out[FL_WS_ACCEPT_LEN])
{
    uint8_t joined[FL_WS_KEY_MAX + sizeof FL_WS_GUID];
    uint8_t digest[20];
    if (n > FL_WS_KEY_MAX) {
        memset(out, '?', FL_WS_ACCEPT_LEN); /* never the right value: the check fails */
        return;
    }
    memcpy(joined, key, n);
    memcpy(joined + n, FL_WS_GUID, sizeof FL_WS_GUID - 1);
    fl_sha1(joined, n + sizeof FL_WS_GUID - 1, digest);
    fl_base64_encode(digest, 20, out);
}

#endif
