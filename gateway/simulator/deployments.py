"""Serverless deployments: the seeded ones, their wire shape, and create/update validation.

Field names follow what RunComfy's clients read (``compact_deployment`` in runcomfy-mcp). The
``status`` values and the DELETE answer are not documented anywhere we could find; the simulator
answers ``"ready"``/``"disabled"`` and ``{"id", "deleted": true}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gateway.simulator.errors import validation_failed
from gateway.simulator.validation import make_validator, schema_errors

HARDWARE_USD_PER_SECOND: dict[str, float] = {
    "TURING_16": 0.00019,
    "AMPERE_24": 0.00033,
    "AMPERE_48": 0.00054,
    "ADA_48_PLUS": 0.00069,
    "AMPERE_80": 0.00097,
    "ADA_80_PLUS": 0.00125,
    "HOPPER_141": 0.00175,
}
"""GPU prices per second; serverless jobs are billed for the seconds they run."""

SEEDED_DEPLOYMENT_IDS = (
    "8d2f6c1e-3b7a-4e59-9c41-0a6b5d7e2f13",
    "4a9e1b7c-52d0-4f3a-b8e6-91c2d3f4a5b6",
    "c6e5d4f3-a2b1-4c0d-8e9f-7a6b5c4d3e2f",
)
"""Fixed ids of the deployments a fresh simulator has, in that order."""

_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1},
    "workflow_id": {"type": "string", "minLength": 1},
    "workflow_version": {"type": "string", "minLength": 1},
    "hardware": {
        "type": "array",
        "minItems": 1,
        "items": {"enum": sorted(HARDWARE_USD_PER_SECOND)},
    },
    "min_instances": {"type": "integer", "minimum": 0},
    "max_instances": {"type": "integer", "minimum": 1},
    "queue_size": {"type": "integer", "minimum": 1},
    "keep_warm_duration_in_seconds": {"type": "integer", "minimum": 0},
    "is_enabled": {"type": "boolean"},
}
_CREATE = make_validator(
    {
        "type": "object",
        "required": ["name", "workflow_id", "workflow_version", "hardware"],
        "properties": _FIELDS,
    }
)
_UPDATE = make_validator(
    {
        "type": "object",
        "required": ["name"],
        "properties": {k: v for k, v in _FIELDS.items() if k != "workflow_id"},
    }
)


def _workflow(output_node_id: str) -> dict[str, Any]:
    """A small but real-looking ComfyUI API workflow for a deployment's payload."""
    return {
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a lighthouse at dusk, volumetric fog", "clip": ["30", 1]},
        },
        "31": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 123456789,
                "steps": 20,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "model": ["30", 0],
                "positive": ["6", 0],
                "negative": ["33", 0],
                "latent_image": ["27", 0],
            },
        },
        output_node_id: {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
        },
    }


@dataclass(slots=True)
class Deployment:
    """One serverless deployment; ``output_node_id`` is where its images come out."""

    id: str
    name: str
    workflow_id: str
    workflow_version: str
    hardware: list[str]
    created_at: str
    updated_at: str
    min_instances: int = 0
    max_instances: int = 1
    queue_size: int = 1
    keep_warm_duration_in_seconds: int = 60
    is_enabled: bool = True
    output_node_id: str = "9"
    readme: str = ""
    workflow_api_json: dict[str, Any] = field(default_factory=dict)

    @property
    def usd_per_second(self) -> float:
        """Price of the first (preferred) GPU type."""
        return HARDWARE_USD_PER_SECOND[self.hardware[0]]

    def outputs(self, request_id: str, asset_base_url: str) -> dict[str, Any]:
        """The ``outputs`` of a succeeded run: one image from the workflow's SaveImage node."""
        filename = "ComfyUI_00001_.png"
        url = f"{asset_base_url.rstrip('/')}/output/{self.id}/{request_id}/{filename}"
        image = {"filename": filename, "subfolder": "", "type": "output", "url": url}
        return {self.output_node_id: {"images": [image]}}

    def to_json(self, includes: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        """The wire shape; ``includes`` may ask for ``payload`` and ``readme``."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "workflow_id": self.workflow_id,
            "workflow_version": self.workflow_version,
            "hardware": list(self.hardware),
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "queue_size": self.queue_size,
            "keep_warm_duration_in_seconds": self.keep_warm_duration_in_seconds,
            "status": "ready" if self.is_enabled else "disabled",
            "is_enabled": self.is_enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if "payload" in includes:
            body["payload"] = {
                "workflow_api_json": self.workflow_api_json or _workflow(self.output_node_id),
                "overrides": {},
                "object_info_url": (
                    "https://serverless-api-storage.runcomfy.net/object_info/"
                    f"{self.workflow_id}/{self.workflow_version}.json"
                ),
            }
        if "readme" in includes:
            body["readme"] = self.readme
        return body

    def updated(self, changes: dict[str, Any], at: str) -> Deployment:
        """A copy with a validated PATCH body applied."""
        known = {k: v for k, v in changes.items() if k in _FIELDS and k != "workflow_id"}
        return replace(self, **known, updated_at=at)


def check_create(body: dict[str, Any]) -> None:
    """422 422001 unless ``body`` can create a deployment."""
    details = schema_errors(_CREATE, body) + _instance_bounds(body)
    if details:
        raise validation_failed("Invalid deployment.", details)


def check_update(body: dict[str, Any], current: Deployment) -> None:
    """422 422001 unless ``body`` can update ``current``; RunComfy insists on ``name``."""
    details = schema_errors(_UPDATE, body)
    if not details:
        merged = {
            "min_instances": body.get("min_instances", current.min_instances),
            "max_instances": body.get("max_instances", current.max_instances),
        }
        details = _instance_bounds(merged)
    if any(d["loc"] == ["body", "name"] for d in details):
        raise validation_failed("Deployment name is required", details)
    if details:
        raise validation_failed("Invalid deployment update.", details)


def _instance_bounds(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``min_instances`` may not exceed ``max_instances``."""
    low, high = body.get("min_instances", 0), body.get("max_instances", 1)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        msg = "min_instances must not exceed max_instances"
        return [{"loc": ["body", "min_instances"], "msg": msg, "type": "value_error"}]
    return []


def seed_deployments() -> list[Deployment]:
    """The deployments every fresh or reset simulator has, with fixed ids tests can use."""
    return [
        Deployment(
            id=SEEDED_DEPLOYMENT_IDS[0],
            name="flux-kontext-edit",
            workflow_id="0d4f5c2a-61b8-4f0e-8a3d-2c9e7b1f4a60",
            workflow_version="v3",
            hardware=["AMPERE_48"],
            created_at="2026-10-02T09:14:11.482913+00:00",
            updated_at="2026-11-03T16:40:27.115204+00:00",
            keep_warm_duration_in_seconds=60,
            output_node_id="9",
            readme="# FLUX Kontext edit\n\nOverride node 6 (text) and 31 (seed).\n",
        ),
        Deployment(
            id=SEEDED_DEPLOYMENT_IDS[1],
            name="sdxl-portrait",
            workflow_id="7b3c9e2d-18f4-4a6b-9d05-e1f2a3b4c5d6",
            workflow_version="v1",
            hardware=["ADA_80_PLUS", "AMPERE_80"],
            created_at="2026-09-18T12:01:55.903117+00:00",
            updated_at="2026-09-18T12:01:55.903117+00:00",
            max_instances=3,
            queue_size=4,
            keep_warm_duration_in_seconds=0,
            output_node_id="58",
            readme="# SDXL portrait\n",
        ),
        Deployment(
            id=SEEDED_DEPLOYMENT_IDS[2],
            name="wan-video-upscale",
            workflow_id="f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9",
            workflow_version="v7",
            hardware=["HOPPER_141"],
            created_at="2026-11-01T08:30:00.000000+00:00",
            updated_at="2026-11-20T10:05:42.660381+00:00",
            min_instances=1,
            max_instances=2,
            keep_warm_duration_in_seconds=300,
            output_node_id="12",
            readme="# Wan video upscale\n",
        ),
    ]
