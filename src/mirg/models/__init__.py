"""Models: loading local Qwen2.5-VL / Qwen2-VL checkpoints and building the offline tiny one.

Importing this package is cheap; torch and transformers are imported by the submodules that need them.
"""
