/* wskey.h - the RFC 6455 section 4 handshake key: Sec-WebSocket-Accept is
 * base64(SHA-1(Sec-WebSocket-Key + the protocol's GUID)). The load generator checks it now;
 * the server will compute it for its own upgrades.
 *
 * SHA-1 serves only this fixed derivation here, never as a security hash. Static inline, no
 * Python, no allocation.
 *
 *   void   fl_sha1(const void *p, size_t n, unsigned char out[20])
 *   size_t fl_base64(const unsigned char *in, size_t n, char *out)
 *       writes 4 * ceil(n / 3) characters (padded with '='), no NUL; returns that count
 *   void   fl_ws_accept(const char *key, size_t n, char out[28])
 *       the Sec-WebSocket-Accept value for key[0..n) (28 characters, no NUL)
 */
#ifndef FL_WSKEY_H
#define FL_WSKEY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FL_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define FL_WS_ACCEPT_LEN 28

typedef struct {
    uint32_t h[5];
    uint64_t bytes;          /* message length so far */
    unsigned char block[64];
    size_t fill;             /* bytes waiting in block */
} fl_sha1_ctx;

static inline uint32_t fl_rol32(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

static inline void fl_sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f, k, t;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (i = 16; i < 80; i++)
        w[i] = fl_rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (i = 0; i < 80; i++) {
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5A827999u;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ED9EBA1u;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDCu;
        else
            f = b ^ c ^ d, k = 0xCA62C1D6u;
        t = fl_rol32(a, 5) + f + e + k + w[i];
        e = d, d = c, c = fl_rol32(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static inline void fl_sha1_init(fl_sha1_ctx *s)
{
    s->h[0] = 0x67452301u, s->h[1] = 0xEFCDAB89u, s->h[2] = 0x98BADCFEu;
    s->h[3] = 0x10325476u, s->h[4] = 0xC3D2E1F0u;
    s->bytes = 0;
    s->fill = 0;
}

static inline void fl_sha1_update(fl_sha1_ctx *s, const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    s->bytes += n;
    while (n > 0) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take, p += take, n -= take;
        if (s->fill == 64) {
            fl_sha1_block(s->h, s->block);
            s->fill = 0;
        }
    }
}

static inline void fl_sha1_final(fl_sha1_ctx *s, unsigned char out[20])
{
    uint64_t bits = s->bytes * 8;
    unsigned char pad[72] = {0x80};
    /* 0x80, zeros up to 56 mod 64, then the length in bits, big-endian */
    size_t padlen = s->fill < 56 ? 56 - s->fill : 120 - s->fill;
    unsigned char len[8];
    int i;
    for (i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (56 - 8 * i));
    fl_sha1_update(s, pad, padlen);
    fl_sha1_update(s, len, 8);
    for (i = 0; i < 20; i++)
        out[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}

static inline void fl_sha1(const void *p, size_t n, unsigned char out[20])
{
    fl_sha1_ctx s;
    fl_sha1_init(&s);
    fl_sha1_update(&s, p, n);
    fl_sha1_final(&s, out);
}

static inline size_t fl_base64(const unsigned char *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18], out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63], out[o++] = abc[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = abc[v >> 18], out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

static inline void fl_ws_accept(const char *key, size_t n, char out[FL_WS_ACCEPT_LEN])
{
    fl_sha1_ctx s;
    unsigned char digest[20];
    fl_sha1_init(&s);
    fl_sha1_update(&s, key, n);
    fl_sha1_update(&s, FL_WS_GUID, sizeof FL_WS_GUID - 1);
    fl_sha1_final(&s, digest);
    fl_base64(digest, 20, out);
}

#endif
