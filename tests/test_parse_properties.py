"""Properties of the parsers, checked on generated inputs (hypothesis): how a stream is split
never changes what it parses to, and no input crashes, hangs or reads past its buffer."""

from fastloop._core import ChunkedDecoder, HeadParser, parse_head
from hypothesis import given, settings
from hypothesis import strategies as st

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
                min_size=1, max_size=12)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=30)
# A valid origin-form target: a "%" always starts an escape (RFC 3986 2.1).
PIECE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~?=&", min_size=1, max_size=8)
PATH = st.lists(st.one_of(PIECE, st.sampled_from(["%41", "%2f", "%C3%A9"])),
                max_size=8).map(lambda p: "/" + "".join(p))


@st.composite
def requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "BREW"]))
    headers = [("Host", "example")] + draw(st.lists(st.tuples(TOKEN, VALUE), max_size=8))
    headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding", "host")
               or n == "Host"]
    head = f"{method} {draw(PATH)} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return head.encode("latin-1")


def split(data, cuts):
    cuts = sorted({c % len(data) for c in cuts} - {0})
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


@settings(max_examples=300, deadline=None)
@given(requests(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=10))
def test_any_split_of_a_valid_head_parses_the_same(data, cuts):
    whole = parse_head(data)
    assert isinstance(whole, dict) and whole["head_len"] == len(data)
    parser = HeadParser()
    results = [parser.feed(piece) for piece in split(data, cuts)]
    assert all(r is None for r in results[:-1]) and results[-1] == whole


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_head_parser(data):
    result = parse_head(data)
    assert result is None or isinstance(result, (int, dict))
    if isinstance(result, int):
        assert result in (400, 413, 414, 431, 501, 505)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=8),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=10))
def test_any_split_of_a_chunked_body_decodes_the_same(chunks, cuts):
    data = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    decoder = ChunkedDecoder()
    results = [decoder.feed(piece) for piece in split(data, cuts)]
    assert results[-1] == (b"".join(chunks), len(data))
    assert all(r is None for r in results[:-1])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_chunked_decoder(data):
    result = ChunkedDecoder(1000).feed(data)
    assert result is None or result in (400, 413, 431) or isinstance(result, tuple)
