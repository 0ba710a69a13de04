"""Is a difference between two demos the base's, or the SFT stage's own variance? Rerun one ``mirg demo`` run's SFT
stage with another training seed, on the same trajectories, base and settings, and evaluate it on the same test
samples.

    python -m lab.probes.sft_seed runs/demo-A1 --seed 1 --out runs/demo-A1-sft1
    python -m lab.probes.sft_seed runs/demo-A2 --seed 1 --out runs/demo-A2-sft1
    mirg compare runs/demo-A1-sft1/eval/sft runs/demo-A2-sft1/eval/sft

``--out`` gets ``data`` (a link to the demo's), ``sft/`` (the model) and ``eval/sft/`` (predictions and metrics),
so ``mirg compare`` and the report's scoring read it like a demo folder. With the demo's own seed it repeats
the demo's SFT stage (on CPU, the same predictions).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path


def rerun_sft(demo: Path, out: Path, seed: int) -> dict:
    """SFT from ``demo``'s base on its trajectories with training seed ``seed`` into ``out/sft``, evaluated into
    ``out/eval/sft``; returns the evaluation's average metrics."""
    from mirg.demo.settings import DemoSettings
    from mirg.demo.stages import eval_stage, sft_stage
    from mirg.errors import MirgError

    summary_path = demo / "demo.json"
    if not summary_path.is_file():
        raise MirgError(f"sft_seed: {summary_path} not found (not a finished mirg demo folder)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    # a demo.json written before a setting was retired (e.g. sft_replay) still loads
    known = {f.name for f in fields(DemoSettings)}
    s = DemoSettings(**{k: v for k, v in summary["settings"].items() if k in known})
    base = Path(summary["base"]["path"]) if summary["base"].get("path") else demo / "base"
    if not (base / "config.json").is_file():
        raise MirgError(f"sft_seed: the demo's base {base} is not a checkpoint folder (no config.json)")
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not data.exists():
        data.symlink_to((demo / "data").resolve(), target_is_directory=True)
    sft_stage(out / "sft", base, demo / "traj" / "trajectories.jsonl", s, seed)
    return eval_stage(out / "eval" / "sft", out / "sft", data / "test" / "samples.jsonl", s)["average"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("demo", type=Path, help="a finished mirg demo --out folder")
    p.add_argument("--seed", type=int, required=True, help="the SFT training seed")
    p.add_argument("--out", type=Path, required=True, help="where the rerun goes (a new folder)")
    args = p.parse_args(argv)
    print(
        json.dumps(
            {"demo": str(args.demo), "seed": args.seed, "sft": rerun_sft(args.demo, args.out, args.seed)}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
