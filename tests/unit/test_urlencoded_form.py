"""Our URL-encoded form parser reads every body field for field as Starlette's does (the
parser Open311 forms went through before), limits and all."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException

from fieldops.open311.forms import MAX_FIELDS, parse_urlencoded


def starlette_fields(body: bytes, chunk: int) -> list[tuple[str, str]] | str:
    """Starlette's reading of ``body`` sent in pieces of ``chunk`` bytes, or its error."""

    async def stream() -> AsyncGenerator[bytes, None]:
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    async def parse() -> list[tuple[str, str]]:
        headers = Headers({"content-type": "application/x-www-form-urlencoded"})
        form = await FormParser(headers, stream()).parse()
        return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]

    # Nothing in it waits for anything: driven by hand, it finishes at the first step, and
    # needs no event loop (another test may have one running in this thread).
    coroutine = parse()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return list(done.value)
    except MultiPartException as error:
        return error.message
    coroutine.close()
    raise AssertionError("Starlette's form parser waited for something")


def ours(body: bytes) -> list[tuple[str, str]] | str:
    try:
        return parse_urlencoded(body)
    except HTTPException as error:
        assert error.status_code == 400
        return str(error.detail)


# Bodies built from the pieces that matter: separators, escapes (good, bad, UTF-8 and not),
# plus signs, bare names, empty names and values, and arbitrary bytes.
PIECES = st.sampled_from(
    [b"&", b"&&", b"=", b"==", b"+", b"%20", b"%2", b"%zz", b"%C3%A9", b"%E9", b"%26", b"%3D",
     b"a", b"api_key", b"attribute[kind]", b"\xc3\xa9", b"\xff", b";", b" ", b"%"]
)  # fmt: skip
BODIES = st.one_of(
    st.lists(PIECES, max_size=30).map(b"".join),
    st.binary(max_size=200),
)


@settings(max_examples=400, deadline=None)
@given(body=BODIES, chunk=st.integers(min_value=1, max_value=64))
def test_every_body_reads_as_starlette_reads_it(body: bytes, chunk: int) -> None:
    assert ours(body) == starlette_fields(body, chunk)


def test_an_open311_form_reads_field_for_field() -> None:
    body = (
        b"api_key=k%2B1&service_code=wildlife&lat=45.5&long=-73.6"
        b"&description=Raton+laveur+pr%C3%A8s+de+l%27%C3%A9cole&attribute%5Banimal%5D=raccoon"
        b"&description=&media_url"
    )
    assert parse_urlencoded(body) == [
        ("api_key", "k+1"),
        ("service_code", "wildlife"),
        ("lat", "45.5"),
        ("long", "-73.6"),
        ("description", "Raton laveur près de l'école"),
        ("attribute[animal]", "raccoon"),
        ("description", ""),
        ("media_url", ""),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"&".join([b"a=1"] * (MAX_FIELDS + 1)),  # one field too many
        b"a=" + b"x" * (1024 * 1024),  # one field over a megabyte
    ],
    ids=["fields", "size"],
)
def test_over_the_limits_it_refuses_as_starlette_does(body: bytes) -> None:
    refused = ours(body)
    assert isinstance(refused, str)
    assert refused == starlette_fields(body, 65536)
    # Just under the limits, both read it.
    assert isinstance(ours(body[: body.rindex(b"&")] if b"&" in body else body[:-1]), list)
