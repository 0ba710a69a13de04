"""The ``mirg`` command line: one verb per stage (``mirg <verb> --help`` for each).

Verbs are listed in :data:`VERBS` as ``"name": ("module.path", "one-line help")``; each module defines
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their verb runs, so
``mirg score`` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mirg import __version__
from mirg.errors import MirgError

# verb -> (module, one-line help). Order is the order shown in --help (the pipeline's order).
VERBS: dict[str, tuple[str, str]] = {
    "synth": ("mirg.synth.cli", "generate MIG-Synth, the procedural multi-image grounding data"),
    "tiny-model": (
        "mirg.models.tiny_cli",
        "build a tiny random Qwen2.5-VL checkpoint offline (tests, CPU demo)",
    ),
    "trajectories": (
        "mirg.trajectories.cli",
        "write verified reasoning trajectories (template or teacher model) for SFT",
    ),
    "sft": (
        "mirg.training.sft_cli",
        "stage 1: supervised fine-tuning on reasoning trajectories (TRL SFTTrainer)",
    ),
    "rl": ("mirg.training.rl_cli", "stage 2: image-aware GRPO with the dual reward (TRL GRPOTrainer)"),
    "eval": ("mirg.evaluation.cli", "batched, resumable evaluation of a checkpoint on Samples or MIG-Bench"),
    "predict": ("mirg.predict_cli", "answer one multi-image question and draw the box"),
    "demo": (
        "mirg.demo.cli",
        "the whole pipeline on built-in data: synth, trajectories, SFT, RL, eval, report",
    ),
    "score": (
        "mirg.scoring_cli",
        "score predictions on MIG-Bench or Sample data (official or mirg protocol)",
    ),
    "report": ("mirg.report", "a Markdown + HTML report on eval runs: tables, curves, a gallery"),
    "compare": ("mirg.compare", "paired comparison of eval runs on the samples they share (exact McNemar)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Build only the requested verb's parser (imports stay lazy); the parser listing every verb otherwise.
    verb = next((a for a in argv if not a.startswith("-")), None)
    if verb not in VERBS:
        parser = argparse.ArgumentParser(
            prog="mirg",
            description="MIRG-RL: multi-image reasoning and grounding for vision-language models.",
        )
        parser.add_argument("--version", action="version", version=f"mirg {__version__}")
        sub = parser.add_subparsers(dest="verb", metavar="<verb>")
        for name, (_, help_text) in VERBS.items():
            sub.add_parser(name, help=help_text, description=help_text, add_help=False)
        parser.parse_args(argv)  # exits on --help, --version or an unknown verb
        parser.print_help()
        return 2
    module_name, help_text = VERBS[verb]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            print(f"mirg: error: '{verb}' is not available in this build of mirg", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog="mirg")
    sub = parser.add_subparsers(dest="verb")
    module.add_arguments(sub.add_parser(verb, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except MirgError as e:
        print(f"mirg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mirg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`mirg compare ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
