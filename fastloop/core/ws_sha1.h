/* SHA-1 (FIPS 180-4) and base64 (RFC 4648), just enough for Sec-WebSocket-Accept.
 *
 * The handshake hashes one short string per connection, so this favours being small and
 * self-contained over speed: no libcrypto dependency for 60 bytes of input. SHA-1 is broken
 * for collision resistance, which RFC 6455 does not rely on (the accept value only proves the
 * server read the key).
 *
 *   void fl_sha1(const uint8_t *data, size_t n, uint8_t out[20]);
 *   size_t fl_base64_encode(const uint8_t *in, size_t n, char *out);   out: 4 * ceil(n / 3)
 *   int fl_base64_decoded_len(const char *in, size_t n);   length of a padded, canonical-
 *       alphabet base64 string's decoded value, or -1 when it is not base64 at all.
 */
#ifndef FL_WS_SHA1_H
#define FL_WS_SHA1_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t fl_sha1_rol(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static void fl_sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80], a, b, c, d, e, f, k, t;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (i = 16; i < 80; i++)
        w[i] = fl_sha1_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999u; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1u; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6u; }
        t = fl_sha1_rol(a, 5) + f + e + k + w[i];
        e = d; d = c; c = fl_sha1_rol(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void fl_sha1(const uint8_t *data, size_t n, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    uint8_t last[128];
    size_t full = n & ~(size_t)63, rest = n - full, tail;
    uint64_t bits = (uint64_t)n * 8;
    int i;
    for (size_t off = 0; off < full; off += 64)
        fl_sha1_block(h, data + off);
    /* Padding: 0x80, zeros, then the bit length big-endian, filling one or two blocks. */
    memset(last, 0, sizeof last);
    memcpy(last, data + full, rest);
    last[rest] = 0x80;
    tail = rest < 56 ? 64 : 128;
    for (i = 0; i < 8; i++)
        last[tail - 1 - i] = (uint8_t)(bits >> (8 * i));
    fl_sha1_block(h, last);
    if (tail == 128)
        fl_sha1_block(h, last + 64);
    for (i = 0; i < 20; i++)
        out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static const char fl_base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t fl_base64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i, o = 0;
    uint32_t v;
    for (i = 0; i + 3 <= n; i += 3) {
        v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = fl_base64_alphabet[v >> 18];
        out[o++] = fl_base64_alphabet[(v >> 12) & 63];
        out[o++] = fl_base64_alphabet[(v >> 6) & 63];
        out[o++] = fl_base64_alphabet[v & 63];
    }
    if (n - i == 1) {
        v = (uint32_t)in[i] << 16;
        out[o++] = fl_base64_alphabet[v >> 18];
        out[o++] = fl_base64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = fl_base64_alphabet[v >> 18];
        out[o++] = fl_base64_alphabet[(v >> 12) & 63];
        out[o++] = fl_base64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

static inline int fl_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

static int fl_base64_decoded_len(const char *in, size_t n)
{
    size_t i, pad = 0;
    if (n == 0 || n % 4 != 0 || n > (1u << 20))
        return -1;
    if (in[n - 1] == '=')
        pad = in[n - 2] == '=' ? 2 : 1;
    for (i = 0; i < n - pad; i++)
        if (!fl_base64_char(in[i]))
            return -1;
    return (int)(n / 4 * 3 - pad);
}

#endif
