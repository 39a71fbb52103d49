"""After the verdict: promotion and notifications."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..base import ApiModel, one_of, require_exactly_one


class PromotionSpec(ApiModel):
    """How the candidate becomes the primary once its verdict is Passed (docs/promotion.md)."""

    mode: Literal["manual", "automatic"] = Field(
        default="manual",
        description="manual: promote only when asked (`shadowctl promote NAME`, or the annotation "
        "shadow.mlops.dev/promote set to the candidate image). automatic: promote on the first Passed verdict "
        "for the current candidate. Either way only a Passed verdict for the current candidate image, "
        "computed for the current generation, is ever promoted.",
    )
    patch_referenced_deployment: bool = Field(
        default=False,
        description="primary.deploymentRef only: on promotion, set the referenced Deployment's model container "
        "image to the candidate's. Its author must be allowed to patch that Deployment. Off (the default), "
        "the operator never changes it: the promotion is a Promoted condition and Event for a pipeline to act on.",
    )


NotificationEvent = Literal["Failed", "Passed", "Inconclusive", "Error", "Promoted"]


class SecretKeySelector(ApiModel):
    """A key of a Secret in the ShadowDeployment's namespace."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253, description="The Secret.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="The key holding the URL.")


class UrlSource(ApiModel):
    """Where a notification URL is read from, at send time."""

    secret_key_ref: SecretKeySelector = Field(description="A key of a Secret holding the URL (e.g. a Slack webhook).")


class NotificationTarget(ApiModel):
    """An HTTP endpoint that receives a JSON POST on the phase transitions listed in `on`."""

    model_config = one_of("url", "urlFrom")

    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=2048,
        description="The endpoint. Set either url or urlFrom (a webhook URL that is itself a credential, "
        "like Slack's, belongs in a Secret).",
    )
    url_from: UrlSource | None = Field(
        default=None,
        description="Read the URL from a Secret when sending. Its author must be allowed to get that Secret, "
        "and the operator must have been granted get on it in this namespace (docs/promotion.md).",
    )
    on: list[NotificationEvent] = Field(
        default_factory=lambda: ["Failed", "Passed", "Inconclusive", "Error", "Promoted"],
        min_length=1,
        description="Phases whose arrival is sent: Failed, Passed, Inconclusive, Error, Promoted (default: all).",
    )

    @model_validator(mode="after")
    def _exactly_one_url(self) -> NotificationTarget:
        require_exactly_one(self, ("url", "url_from"), "set exactly one of url or urlFrom")
        return self
