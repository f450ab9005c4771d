"""``runcomfy-gateway admin pricing``: price overrides, deployment rates and trial estimates."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click

from gateway.cli.common import AdminClient, AdminGroup, escape, output, say, table

MODEL_PRICE_COLUMNS = ["model_id", "unit_price_usd", "price_unit", "units_param", "default_units"]
DEPLOYMENT_PRICE_COLUMNS = ["deployment_id", "usd_per_second", "estimated_seconds"]
ESTIMATE_COLUMNS = ["cost", "micro", "unit_price_micro", "units", "unit", "source", "notes"]


def _dollars(micro: int) -> str:
    """Micro-dollars as text, without a float in between."""
    return f"${micro // 1_000_000}.{micro % 1_000_000:06d}"


def _parse_rule(text: str) -> dict[str, Any]:
    """``PARAM=VALUE:USD`` sets the unit price, ``PARAM=VALUE:xN`` multiplies it."""
    condition, _, effect = text.rpartition(":")
    param, eq, value = condition.partition("=")
    try:
        if not (param and eq and effect):
            raise ValueError
        if effect[0] in "x*":
            return {"param": param, "equals": value, "multiplier": float(effect[1:])}
        return {"param": param, "equals": value, "unit_price_usd": float(effect)}
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use PARAM=VALUE:USD or PARAM=VALUE:xMULTIPLIER", param_hint="--rule"
        ) from None


def _rules_text(rules: list[dict[str, Any]]) -> str:
    parts = []
    for rule in rules:
        effect = (
            f"x{rule['multiplier']:g}" if "multiplier" in rule else f"${rule['unit_price_usd']}"
        )
        parts.append(f"{rule['param']}={rule['equals']}:{effect}")
    return ", ".join(parts)


@click.group("pricing", cls=AdminGroup)
def group() -> None:
    """Price overrides and trial estimates. An estimate is what a budget reserves."""


@group.command("show")
@click.pass_obj
def pricing_show(client: AdminClient) -> None:
    """Every model override and deployment rate."""
    data = client.request("GET", "/admin/v1/pricing")

    def render() -> None:
        models = [
            {"model_id": k, **v, "rules": _rules_text(v.get("rules", []))}
            for k, v in data["models"].items()
        ]
        table("Model price overrides", models, [*MODEL_PRICE_COLUMNS, "rules"])
        deployments = [{"deployment_id": k, **v} for k, v in data["deployments"].items()]
        table("Deployment rates", deployments, DEPLOYMENT_PRICE_COLUMNS)

    output(data, render)


@group.command("set-model")
@click.argument("model_id")
@click.option("--unit-price", type=float, help="USD per output or per second.")
@click.option("--unit", type=click.Choice(["output", "second"]), help="What the price is per.")
@click.option("--units-param", help="The input that counts outputs or seconds.")
@click.option("--default-units", type=float, help="Units when the request names none.")
@click.option(
    "--rule",
    "rules",
    multiple=True,
    metavar="PARAM=VALUE:USD|xN",
    help="PARAM=VALUE:USD sets the unit price, PARAM=VALUE:xN multiplies it; applied in order, "
    "repeatable. PARAM must be an input of the model and VALUE one it can take.",
)
@click.pass_obj
def pricing_set_model(
    client: AdminClient,
    model_id: str,
    unit_price: float | None,
    unit: str | None,
    units_param: str | None,
    default_units: float | None,
    rules: tuple[str, ...],
) -> None:
    """Replace MODEL_ID's price override. Options not given are not kept; the gateway checks
    it against the model's input schema in RunComfy's catalog."""
    body = {
        "unit_price_usd": unit_price,
        "price_unit": unit,
        "units_param": units_param,
        "default_units": default_units,
        "rules": [_parse_rule(r) for r in rules] or None,
    }
    path = f"/admin/v1/pricing/models/{quote(model_id, safe='/')}"
    data = client.request("PUT", path, {k: v for k, v in body.items() if v is not None})
    row = {**data, "rules": _rules_text(data.get("rules", []))}
    output(
        data,
        lambda: table("Model price override", [row], [*MODEL_PRICE_COLUMNS, "rules"]),
    )


@group.command("clear-model")
@click.argument("model_id")
@click.pass_obj
def pricing_clear_model(client: AdminClient, model_id: str) -> None:
    """Drop MODEL_ID's override. The catalog price applies again."""
    data = client.request("DELETE", f"/admin/v1/pricing/models/{quote(model_id, safe='/')}")
    output(data, lambda: say(f"Cleared the override of [bold]{escape(model_id)}[/bold]."))


@group.command("set-deployment")
@click.argument("deployment_id")
@click.option("--usd-per-second", type=float, required=True, help="GPU rate in USD per second.")
@click.option("--seconds", type=float, required=True, help="Expected run time of one job.")
@click.pass_obj
def pricing_set_deployment(
    client: AdminClient, deployment_id: str, usd_per_second: float, seconds: float
) -> None:
    """Set DEPLOYMENT_ID's GPU rate and expected run time."""
    body = {"usd_per_second": usd_per_second, "estimated_seconds": seconds}
    data = client.request("PUT", f"/admin/v1/pricing/deployments/{deployment_id}", body)
    output(data, lambda: table("Deployment rate", [data], DEPLOYMENT_PRICE_COLUMNS))


@group.command("clear-deployment")
@click.argument("deployment_id")
@click.pass_obj
def pricing_clear_deployment(client: AdminClient, deployment_id: str) -> None:
    """Forget DEPLOYMENT_ID's rate. Its requests are estimated as unknown again."""
    data = client.request("DELETE", f"/admin/v1/pricing/deployments/{deployment_id}")
    output(data, lambda: say(f"Cleared the rate of [bold]{escape(deployment_id)}[/bold]."))


@group.command("estimate")
@click.argument("model", required=False)
@click.option("--model", "model_id", help="A Model API model id (or give it as MODEL).")
@click.option("--deployment", "deployment_id", help="A Serverless deployment id.")
@click.option(
    "--body",
    default="{}",
    show_default=True,
    help="The request body as JSON, or @FILE to read it from a file (@- from stdin), as curl's -d.",
)
@click.pass_obj
def pricing_estimate(
    client: AdminClient,
    model: str | None,
    model_id: str | None,
    deployment_id: str | None,
    body: str,
) -> None:
    """What one request would reserve, and how that was found.

    Give MODEL (or --model) for the Model API, or --deployment for Serverless."""
    if model is not None and model_id is not None and model != model_id:
        raise click.UsageError("give the model once: as MODEL or as --model")
    model_id = model_id or model
    if (model_id is None) == (deployment_id is None):
        raise click.UsageError("give exactly one of --model and --deployment")
    if body.startswith("@"):
        try:
            with click.open_file(body[1:], encoding="utf-8") as source:
                body = source.read()
        except OSError as exc:
            why = f"cannot read {body[1:]}: {exc.strerror}"
            raise click.BadParameter(why, param_hint="--body") from None
    try:
        inputs = json.loads(body)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--body") from None
    query = {"model_id": model_id, "deployment_id": deployment_id, "body": inputs}
    data = client.request(
        "POST", "/admin/v1/pricing/estimate", {k: v for k, v in query.items() if v is not None}
    )
    row = {**data, "cost": _dollars(data["micro"]), "notes": "; ".join(data["notes"])}
    output(data, lambda: table("Estimate", [row], ESTIMATE_COLUMNS))
