"""Image-only reasoning for a demo run's SFT set (the RL study's seventh pass): drop the compact reasoning's
object line ("In Image-2: the medium yellow square at the right." / "Target: ..."), keep the image decision
("... -> Image-2.") and the answer. Rewrites ``RUN/traj/trajectories.jsonl`` in place; the demo's SFT stage keys on
that file's hash, so a rerun of the demo retrains SFT and everything after it.

    python -m lab.rl_study.image_only runs/rl_study/R14
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

OBJECT_LINE = ("In Image-", "Target:")


def image_only(text: str) -> str:
    """A compact completion without its object line (unchanged when it has none)."""
    think, sep, answer = text.partition("</think>")
    lines = think.removeprefix("<think>").split("\n")
    if len(lines) < 2 or not lines[-1].startswith(OBJECT_LINE):
        return text
    return "<think>" + "\n".join(lines[:-1]) + sep + answer


def rewrite(run: Path) -> tuple[int, int]:
    """(rows changed, rows) of ``run``'s trajectory file."""
    traj = run / "traj" / "trajectories.jsonl"
    records: list[dict[str, Any]] = [
        json.loads(x) for x in traj.read_text(encoding="utf-8").splitlines() if x
    ]
    changed = 0
    for r in records:
        part = r["messages"][-1]["content"][0]
        new = image_only(part["text"])
        changed += new != part["text"]
        part["text"] = new
    traj.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return changed, len(records)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a demo folder (its traj/)")
    changed, n = rewrite(ap.parse_args(argv).run)
    print(f"dropped the object line of {changed} of {n} trajectories")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
