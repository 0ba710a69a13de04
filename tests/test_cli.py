import subprocess
import sys

from mirg.cli import VERBS, main


def test_help_lists_every_verb(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


def test_console_script_runs_without_heavy_imports():
    # `mirg score` must not pay for torch/transformers: check in a fresh interpreter
    code = "import sys; from mirg.cli import main; main(['score', '--help'])"
    r = subprocess.run([sys.executable, "-c", code + "\n"], capture_output=True, text=True)
    assert "--protocol" in r.stdout
    code = (
        "import sys\nfrom mirg.cli import main\ntry:\n    main(['score', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().endswith("False False")
