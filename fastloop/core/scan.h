/* scan.h - byte scans shared by the HTTP parsers of the server and of the load generator.
 * Static inline, no Python, no allocation; each reads only buf[0:n).
 *
 *   ssize_t fl_scan_head_end(const char *buf, size_t n, size_t start)
 *       Length of the head through its CRLF CRLF when buf holds one, 0 when not yet, or
 *       FL_SCAN_BARE_LF (-400, the status to answer) when a line ends in a bare LF followed
 *       by another LF: no CRLF CRLF would ever come. `start` is how many bytes an earlier
 *       call already scanned: the scan resumes 3 bytes before it (a terminator may straddle
 *       the two reads), so a head that arrives byte by byte costs O(n), not O(n^2)
 *       (picohttpparser's last_len does the same).
 *
 *   int fl_scan_hex(const char *buf, size_t n, int64_t *out)
 *       Reads the hex digits at the start of buf (a chunk size) into *out. Returns how many
 *       digits it read (any number of leading zeros is fine), 0 when buf does not start with
 *       a hex digit, or FL_SCAN_OVERFLOW when the value exceeds INT64_MAX: a length is kept
 *       in a signed 64-bit count, never narrowed.
 */
#ifndef FL_SCAN_H
#define FL_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define FL_SCAN_BARE_LF (-400)
#define FL_SCAN_OVERFLOW (-1)

static inline ssize_t fl_scan_head_end(const char *buf, size_t n, size_t start)
{
    size_t i = start > 3 ? start - 3 : 0;
    while (i < n) {
        const char *nl = (const char *)memchr(buf + i, '\n', n - i);
        if (nl == NULL)
            return 0;
        i = (size_t)(nl - buf);
        if (i >= 3 && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return (ssize_t)(i + 1);
        if (i >= 1 && buf[i - 1] == '\n')
            return FL_SCAN_BARE_LF;
        i++;
    }
    return 0;
}

static inline int fl_scan_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20); /* 'A'..'F' -> 'a'..'f'; nothing else maps into that range */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static inline int fl_scan_hex(const char *buf, size_t n, int64_t *out)
{
    int64_t v = 0;
    size_t i = 0;
    int d;
    while (i < n && (d = fl_scan_hex_digit(buf[i])) >= 0) {
        if (v > (INT64_MAX - d) / 16)
            return FL_SCAN_OVERFLOW;
        v = v * 16 + d;
        i++;
    }
    *out = v;
    /* i can only exceed INT_MAX through leading zeros; the caller's line limit stops that
     * long before, but never report a negative count for it. */
    return i > 0x7fffffff ? 0x7fffffff : (int)i;
}

#endif
