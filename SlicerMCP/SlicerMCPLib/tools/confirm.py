"""Confirmation by a person (`allow.confirm_with_person`): a gated operation that is off asks the
person through the client, shows exactly what will happen, and runs once if they accept.

A gated tool declares a hidden parameter `person: X = None` where
`X = asks_person(operations, describe)`. The SDK's resolver machinery (`Resolve`) fills it
before the tool body runs; it is not in the tool's input schema, so nothing an assistant
sends can stand in for it (an argument named `person` is refused as unknown). The resolver
asks only when confirmation is on, the operation is off and the client declared the
elicitation capability: on handshake-era connections with `elicitation/create` (answered
within `timeouts.confirm_s`), on 2026-07-28 ones through the SDK's InputRequiredResult round
trip (the question and the answer are bound to the call by the SDK's sealed request state).
The body passes the answer to `Services.require_allowed`; decline, cancel, a false `approve`,
no elicitation support, a timeout or a failure all leave today's OPERATION_DISABLED.
An accept covers the operations of that one call only, and is logged (never the details:
they may hold PHI).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Annotated, Any, ClassVar

import anyio
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from ..core.services import Services, services_of

log = logging.getLogger(__name__)

MAX_SHOWN = 4000  # characters of a description; a longer one is not asked about (it could not be read)


class PersonsAnswer(BaseModel):
    """What the resolver found without asking, or what the person answered on a handshake-era call."""

    approved_operations: frozenset[str] = frozenset()


NOT_ASKED = PersonsAnswer()


def _approval_form(operations: tuple[str, ...]) -> type[BaseModel]:
    """The elicitation form: one yes/no field; accepting with it true approves `operations`."""

    class Approval(BaseModel):
        approve: bool = Field(
            default=False, title="Allow this one operation", description="yes to run it once"
        )
        OPERATIONS: ClassVar[frozenset[str]] = frozenset(operations)

        @property
        def approved_operations(self) -> frozenset[str]:
            return self.OPERATIONS if self.approve else frozenset()

    return Approval


def asks_person(operations: str | Iterable[str], describe: Callable[..., str]) -> Any:
    """The annotation of a gated tool's hidden `person` parameter.

    `operations`: the allow keys the tool needs. `describe(services, **arguments)` says exactly
    what the call will do (destination, UIDs, resource, code); its other parameters are tool
    arguments by name, passed validated. It may return "" when the call needs none of the
    operations (e.g. a CR study without sending it).
    """
    ops = (operations,) if isinstance(operations, str) else tuple(operations)
    form = _approval_form(ops)
    arg_names = list(inspect.signature(describe).parameters)[1:]

    async def ask(ctx: Context, **arguments: Any) -> Any:
        try:
            services = services_of(ctx)
            needed = [op for op in ops if not getattr(services.config.allow, op)]
            if not needed or not services.config.allow.confirm_with_person:
                return NOT_ASKED
            if not _client_elicits(ctx):
                log.info("allow.%s is off and the client cannot ask the person (no elicitation)", needed[0])
                return NOT_ASKED
            shown = describe(services, **arguments)
        except Exception as exc:  # anything unexpected: do not ask, the operation stays off
            log.warning("confirmation not asked: %s", exc)
            return NOT_ASKED
        if not shown:
            return NOT_ASKED
        if len(shown) > MAX_SHOWN:
            log.info("confirmation not asked: the description is %d characters, too long to show", len(shown))
            return NOT_ASKED
        keys = ", ".join(f"allow.{op}" for op in needed)
        message = (
            f"An assistant asks to do this:\n\n{shown}\n\n{keys} is off in the config. Allow this one call?"
        )
        log.info("asking the person to allow %s once", keys)
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return Elicit(message, form)  # the SDK returns InputRequiredResult and resumes on the answer
        return await _ask_now(ctx, message, form, services)

    ask.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in arg_names]
    )
    ask.__annotations__ = {"ctx": Context}
    ask.__qualname__ = f"asks_person[{','.join(ops)}:{describe.__qualname__}]"  # the SDK's wire key
    return Annotated[ElicitationResult[form], Resolve(ask)]


def _client_elicits(ctx: Context) -> bool:
    try:
        caps = ctx.client_capabilities
    except ValueError:  # no request: a call from the Slicer Python console
        return False
    return caps is not None and caps.elicitation is not None


async def _ask_now(ctx: Context, message: str, form: type[BaseModel], services: Services) -> PersonsAnswer:
    """Handshake era: elicitation/create now, within timeouts.confirm_s; anything but an accept is a no."""
    try:
        with anyio.fail_after(services.config.timeouts.confirm_s):
            result = await ctx.elicit(message, form)
    except TimeoutError:
        log.warning(
            "the person did not answer within %.0f s: the operation stays off",
            services.config.timeouts.confirm_s,
        )
        return NOT_ASKED
    except Exception as exc:  # the client failed to ask: the operation stays off
        log.warning("asking the person failed: %s", exc)
        return NOT_ASKED
    if isinstance(result, AcceptedElicitation):
        approved = result.data.approved_operations  # type: ignore[attr-defined]
        log.warning("the person %s the operation", "allowed" if approved else "did not allow")
        return PersonsAnswer(approved_operations=approved)
    log.info("the person answered %s: the operation stays off", result.action)
    return NOT_ASKED
