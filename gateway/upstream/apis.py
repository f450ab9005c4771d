"""RunComfy's two APIs, which every layer names: the Model API and Serverless deployments."""

from enum import StrEnum


class Api(StrEnum):
    MODEL = "model"
    SERVERLESS = "serverless"
