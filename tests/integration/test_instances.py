"""Two gateways on one PostgreSQL: rate limits and dedupe live in the database."""

from __future__ import annotations

import pytest

from sms_gateway.domain.model import InboundSms, Outcome

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two_gateways(pg_url, settings_for, gateway_factory):
    settings = settings_for(pg_url, rules={"rate_limit_per_phone_per_hour": 3})
    first = await gateway_factory(settings)
    second = await gateway_factory(settings, demo=False)
    return first, second


def sms(clock, text: str, external_id: str | None = None) -> InboundSms:
    return InboundSms("smpp", "+79161234567", "7377", text, clock(), external_id=external_id)


async def test_rate_limit_counts_messages_handled_by_either_instance(two_gateways, clock):
    """Messages from one phone spread over two instances count toward one limit, and the
    rate_limited answer is sent once between them."""
    first, second = two_gateways
    outcomes = []
    for index in range(6):
        gateway = (first, second)[index % 2]
        reply = await gateway.pipeline.handle(sms(clock, f"1234567833 {1200 + index}", f"m{index}"))
        outcomes.append((reply.outcome, reply.text is not None))
    assert [
        (Outcome.ACCEPTED, True),
        (Outcome.CORRECTED, True),
        (Outcome.CORRECTED, True),
        (Outcome.RATE_LIMITED, True),
        (Outcome.RATE_LIMITED, False),
        (Outcome.RATE_LIMITED, False),
    ] == outcomes


async def test_a_redelivery_to_the_other_instance_books_nothing_twice(two_gateways, clock):
    """The SMSC redelivers an MO to the other bind: the same stored message, no new reply."""
    first, second = two_gateways
    original = await first.pipeline.handle(sms(clock, "1234567833 1234", "smsc-77"))
    again = await second.pipeline.handle(sms(clock, "1234567833 1234", "smsc-77"))
    assert (original.inbound_id, original.outbound_id) == (again.inbound_id, again.outbound_id)
    assert (Outcome.ACCEPTED, "true") == (again.outcome, again.extra.get("redelivery"))
