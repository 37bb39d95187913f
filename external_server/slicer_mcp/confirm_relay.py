"""Confirmation by a person through the proxy: the in-Slicer server asks, the stdio client's person answers.

The proxy never makes or changes an answer; it only carries the question and the answer:
- handshake-era stdio client: the server's `elicitation/create`, sent to the proxy's upstream
  session mid-call, goes on to the stdio client unchanged and its answer goes back as it came;
- a handshake-era stdio client without elicitation: upstream gets the answer an SDK client
  without elicitation gives ("Elicitation not supported"), so the gated operation stays
  OPERATION_DISABLED, as when that client connects directly. The handshake upstream session is
  opened before the stdio client's handshake, so it always declares elicitation and this answer
  stands for "not supported";
- 2026-07-28 stdio client: its tools/call goes over the upstream session on the 2026 wire that
  declares elicitation as the client did. If it did, the server's InputRequiredResult (the
  question, and the request state the server sealed and bound to that call) reaches the client
  unchanged and the retry with its inputResponses goes back the same way; if not, the server
  does not ask.
A stdio client that fails to answer, or goes away, is a decline; a timeout is the server's
(`timeouts.confirm_s`), which stops waiting and leaves the operation off.
"""

from __future__ import annotations

import logging

import mcp_types as types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter

log = logging.getLogger(__name__)

#: what the SDK's client answers an elicitation when it has no elicitation callback
NOT_SUPPORTED = types.ErrorData(code=types.INVALID_REQUEST, message="Elicitation not supported")

#: a tools/call answer on the 2026 wire: the result, or the question that has to be answered first
CALL_OR_INPUT: TypeAdapter[types.CallToolResult | types.InputRequiredResult] = TypeAdapter(
    types.CallToolResult | types.InputRequiredResult
)


def elicits(session: ServerSession | None) -> bool:
    """Whether the stdio client behind `session` declared the elicitation capability."""
    caps = session.client_capabilities if session is not None else None
    return caps is not None and caps.elicitation is not None


def on_the_2026_wire(session: ServerSession) -> bool:
    return session.protocol_version in MODERN_PROTOCOL_VERSIONS


async def relay_elicitation(
    session: ServerSession | None, params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    """Ask the stdio client's person what upstream asks; their answer, unchanged, goes back."""
    if session is None or not elicits(session) or on_the_2026_wire(session):
        # a 2026 client that elicits calls over the 2026 upstream session and is never asked here
        log.info("the stdio client cannot ask the person (no elicitation on its connection)")
        return NOT_SUPPORTED
    try:
        return await session.send_request(types.ElicitRequest(params=params), types.ElicitResult)
    except MCPError as exc:  # the stdio client refused to ask: upstream hears it as it was said
        return exc.error
    except Exception as exc:  # no answer (the client went away, a bad reply): a no
        log.warning("the stdio client did not answer the confirmation: %s", exc)
        return types.ElicitResult(action="decline")
