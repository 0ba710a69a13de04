"""mirg: multi-image reasoning and grounding (MIRG-RL) for vision-language models."""

__version__ = "0.1.0"
