"""HTTP-level tuning of the uploader's own S3 client.

aiohttp (>= 3.10) silently resends an idempotent request, PUT included, once when a reused
keep-alive connection drops. The store sees that attempt, but nothing above aiohttp counts
it, so `max_retries` would not bound the attempts. `CountedAttemptsSession` turns that resend
off; the uploader retries such failures itself, with backoff, and counts them.

botocore asks for `Expect: 100-continue` whenever a body is file-like, which costs a round
trip before every part; `skip_expect_continue` drops it.

botocore prepares a request in one go, about 1.2 ms of CPU for an UploadPart (validation,
endpoint rules, signing, the user agent): `yield_to_loop`, run once the parameters are built
and again once the request is signed, lets the loop run between those steps.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiobotocore.httpsession import AIOHTTPSession


class CountedAttemptsSession(AIOHTTPSession):  # type: ignore[misc]
    """AIOHTTPSession whose aiohttp sessions do not resend requests on their own."""

    async def _get_session(self, proxy_url: Any) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = await super()._get_session(proxy_url)
        if getattr(session, "_retry_connection", False):
            session._retry_connection = False
        return session


def skip_expect_continue(params: dict[str, Any], **_: Any) -> None:
    """A `before-call.s3` handler removing the header botocore's own handler just added."""
    params["headers"].pop("Expect", None)


async def yield_to_loop(**_: Any) -> None:
    """A `before-call` / `before-send` handler that lets other callbacks run first."""
    await asyncio.sleep(0)
