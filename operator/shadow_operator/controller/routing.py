"""Pure: where the client Service sends traffic in builtin mode, the router or the primary.

The Service moves to the router only once a router Pod is available: switching in the same
pass that creates the router refused every client connection until its first Pod started
(3.1 s of refused connections with a healthy router on a real node; all of them with a
router that could not start). It moves back to the primary once no router Pod has been
available for `traffic.routerGracePeriod`, so a broken router costs clients at most that long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..contract import reasons
from .observed import ObservedDeployment


@dataclass(frozen=True)
class RoutingDecision:
    through_router: bool
    # Seconds until the decision may change with nothing else happening (the grace period
    # running out): when to look again without waiting for the periodic resync.
    recheck_after: float | None
    # The RouterAvailable condition: status, reason, message.
    available: bool
    reason: str
    message: str


def decide_routing(
    service: str,
    router_name: str,
    router: ObservedDeployment | None,
    routed_through_router: bool,
    previous: tuple[str, datetime] | None,
    grace: timedelta,
    now: datetime,
) -> RoutingDecision:
    """Route through the router while one of its Pods is available, or within the grace period after.

    `previous` is the stored RouterAvailable condition when it is False: its reason and since when.
    """
    ready = router.available_replicas if router is not None else 0
    if ready > 0:
        return RoutingDecision(
            True, None, True, reasons.ROUTED_THROUGH_ROUTER,
            f"Service {service} routes through {router_name} ({ready} router Pod(s) available).",
        )  # fmt: skip
    if not routed_through_router:
        if previous is not None and previous[0] in (reasons.ROUTER_UNAVAILABLE, reasons.ROUTED_TO_PRIMARY):
            return RoutingDecision(
                False, None, False, reasons.ROUTED_TO_PRIMARY,
                f"No Pod of {router_name} is available: Service {service} routes straight to the primary, "
                "unmirrored, until one is.",
            )  # fmt: skip
        return RoutingDecision(
            False, None, False, reasons.ROUTER_STARTING,
            f"Service {service} keeps routing to the primary until a Pod of {router_name} is available.",
        )  # fmt: skip
    unavailable_since = previous[1] if previous is not None else None
    since = unavailable_since or now
    remaining = (since + grace - now).total_seconds()
    if remaining > 0:
        return RoutingDecision(
            True, remaining, False, reasons.ROUTER_UNAVAILABLE,
            f"No Pod of {router_name} is available; Service {service} moves back to the primary in "
            f"{remaining:.0f}s (traffic.routerGracePeriod) unless one becomes available.",
        )  # fmt: skip
    return RoutingDecision(
        False, None, False, reasons.ROUTED_TO_PRIMARY,
        f"No Pod of {router_name} was available for {grace.total_seconds():g}s (traffic.routerGracePeriod): "
        f"Service {service} routes straight to the primary, unmirrored, until one is.",
    )  # fmt: skip
