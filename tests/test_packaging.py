"""A wheel (`pip install .`, not editable) must run the same demo as a checkout: the shipped base and the stage
configs the demo reads are package data, found next to the installed package, not in a repository. The lab
(`lab/`: the tiny base's pretraining and probes) is not in it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_repository_links_point_at_the_package_data() -> None:
    for name in ("assets", "configs"):
        link = REPO / name
        assert link.is_symlink(), f"{name}/ should link to src/mirg/{name}"
        assert link.resolve() == (REPO / "src" / "mirg" / name).resolve()
    from mirg.demo.settings import SHIPPED_BASE
    from mirg.demo.stages import stage_config

    assert (SHIPPED_BASE / "model.safetensors").is_file()
    assert stage_config("sft").is_file() and stage_config("rl").is_file()


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build offline"
)
def test_an_installed_wheel_finds_the_shipped_base_and_configs(tmp_path: Path) -> None:
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
             "-w", str(wheels)]  # fmt: skip
    subprocess.run(build, check=True, cwd=tmp_path, timeout=600)
    (wheel,) = wheels.glob("mirg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("assets/tiny_base/model.safetensors", "assets/tiny_base/config.json", "configs/tiny/sft.yaml",
              "configs/tiny/rl.yaml", "configs/demo/smoke.yaml"):  # fmt: skip
        assert f"mirg/{f}" in names, f"the wheel lacks mirg/{f}"
    # the lab (the tiny base's pretraining and probes, the vision head only it reads) stays out of the wheel
    lab = [n for n in names if n.startswith(("lab/", "benchmarks/")) or "vision_head" in n
           or n.rsplit("/", 1)[-1] in ("loop.py", "bind.py", "grow.py", "vision.py", "batching.py")]  # fmt: skip
    assert not lab, lab
    with zipfile.ZipFile(wheel) as z:
        lab_imports = re.compile(r"^\s*(from lab[ .]|import lab\b)", re.M)
        assert not [n for n in names if n.endswith(".py") and lab_imports.search(z.read(n).decode())]
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # what `pip install` puts in site-packages
    probe = (
        "import json, mirg; from mirg.demo.settings import resolve_base; from mirg.demo.stages import stage_config; "
        "b, how = resolve_base(None); print(json.dumps([mirg.__file__, str(b), how, str(stage_config('rl'))]))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}  # before the editable install on sys.path
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=300)  # fmt: skip
    package, base, how, rl = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(package).is_relative_to(site), package
    assert how.startswith("shipped") and Path(base).is_relative_to(site), (base, how)
    assert Path(rl).is_relative_to(site) and Path(rl).is_file()
