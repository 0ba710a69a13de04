"""Training: configs, datasets, model helpers, the GRPO sanity check, short SFT/RL runs on the tiny model.

The end-to-end learning checks (SFT loss falls, RL raises the reward) and ``accelerate launch`` are in
test_training_e2e.py (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirg.errors import DataError, ImageError, MirgError

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- helpers
def shrink_images(folder: Path, max_side: int = 84) -> None:
    """Downscale every PNG under ``folder`` so its longer side is at most ``max_side`` (normalized boxes hold)."""
    from PIL import Image

    for p in sorted(Path(folder).rglob("*.png")):
        with Image.open(p) as im:
            im.load()
            w, h = im.size
            s = max_side / max(w, h)
            if s < 1:
                im.resize((max(28, round(w * s)), max(28, round(h * s)))).save(p)


def make_rl_data(make_samples, folder: Path, n: int, seed: int = 0, max_images: int = 2) -> Path:
    """A small Sample JSONL with tiny images (fast GRPO steps)."""
    path = make_samples(Path(folder), n, seed=seed, max_images=max_images)
    shrink_images(Path(folder))
    return path


def write_trajectories(samples_path: Path, model_dir: Path, out: Path) -> Path:
    """A trajectories.jsonl (the record shape `mirg trajectories` writes) for the Samples in ``samples_path``."""
    from PIL import Image

    from mirg.models.loading import load_processor
    from mirg.prompting import build_messages, resized_size, target_completion
    from mirg.sample import read_samples

    processor = load_processor(model_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for s in read_samples(samples_path):
            paths = [Path(samples_path).parent / p for p in s.images]
            sizes = [list(resized_size(Image.open(p).size, processor)) for p in paths]
            reasoning = f"The red circle is in Image-{s.target_image}."
            completion = target_completion(s, "qwen2_5_vl", reasoning, tuple(sizes[s.target_image - 1]))
            rec = {
                "id": s.id,
                "task": s.task,
                "source": s.source,
                "messages": build_messages(s, "qwen2_5_vl", completion=completion),
                "images": [str(Path("..") / samples_path.parent.name / p) for p in s.images]
                if out.parent != samples_path.parent
                else list(s.images),
                "target_image": s.target_image,
                "target_box": list(s.target_box),
                "dialect": "qwen2_5_vl",
                "resized_sizes": sizes,
                "mode": "template",
                "teacher_key": None,
            }
            f.write(json.dumps(rec) + "\n")
    return out


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def sft_overrides(model_dir: Path, train_file: Path, out: Path, steps: int = 2, **extra) -> list[str]:
    args = {
        "model_name_or_path": model_dir,
        "train_file": train_file,
        "output_dir": out,
        "max_steps": steps,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "disable_tqdm": "true",
        **extra,
    }
    return [s for k, v in args.items() for s in (f"--{k}", str(v))]


def rl_overrides(model_dir: Path, train_file: Path, out: Path, steps: int = 2, **extra) -> list[str]:
    args = {
        "model_name_or_path": model_dir,
        "train_file": train_file,
        "output_dir": out,
        "max_steps": steps,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 16,
        "learning_rate": 1e-4,
        "logging_steps": 1,
        "beta": 0.0,
        "save_strategy": "no",
        "disable_tqdm": "true",
        **extra,
    }
    return [s for k, v in args.items() for s in (f"--{k}", str(v))]


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_model_dir):
    """(samples.jsonl, trajectories.jsonl) with 8 small samples of 1-2 tiny images."""
    from conftest import make_synthetic_samples

    root = tmp_path_factory.mktemp("training-data")
    samples = make_rl_data(make_synthetic_samples, root / "synth", 8, seed=3)
    traj = write_trajectories(samples, tiny_model_dir, root / "traj" / "trajectories.jsonl")
    return samples, traj


# ---------------------------------------------------------------------------------------------- configs
def test_yaml_then_overrides_and_cpu_settings(tmp_path):
    from trl import GRPOConfig, ModelConfig

    from mirg.training.config import RLDataArguments, parse_stage_config

    cfg = write_yaml(
        tmp_path / "rl.yaml",
        {"train_file": "a.jsonl", "beta": 0.04, "num_generations": 4, "bf16": True, "w_image": 2.0,
         "output_dir": str(tmp_path / "o"), "per_device_train_batch_size": 4},
    )  # fmt: skip
    (data, train, model), notes = parse_stage_config(
        [RLDataArguments, GRPOConfig, ModelConfig], cfg, ["--beta", "0.1", "--gated", "false"], cpu=True
    )
    assert train.beta == 0.1 and train.num_generations == 4  # command line beats YAML
    assert data.train_file == "a.jsonl" and data.w_image == 2.0 and data.gated is False
    assert (train.bf16, train.gradient_checkpointing, train.use_cpu, model.dtype) == (
        False,
        False,
        True,
        "float32",
    )
    assert "no GPU" in notes[0] and "bf16=True" in notes[0]
    rc = data.reward_config("qwen2_5_vl")
    assert rc.weights == [1.0, 2.0, 1.0] and rc.gated is False


@pytest.mark.parametrize(
    "content, overrides, message",
    [
        ({"learning_rat": 1e-5}, [], "unknown key(s) learning_rat"),
        ({}, ["--no_such_option", "1"], "unknown option(s) --no_such_option 1"),
        ({"num_generations": "many"}, [], "invalid int value"),
        ("- a\n- b\n", [], "must be a YAML mapping"),
        ({"object_variant": "dice"}, [], "object_variant must be one of"),
    ],
)
def test_bad_configs_fail_with_one_line(tmp_path, content, overrides, message):
    from mirg.training.config import parse_stage_config
    from mirg.training.stage_cli import stage_types

    path = tmp_path / "c.yaml"
    if isinstance(content, str):
        path.write_text(content)
    else:
        write_yaml(path, {"output_dir": str(tmp_path), **content})
    types, defaults = stage_types("rl")
    with pytest.raises(MirgError) as e:
        (data, *_), _ = parse_stage_config(types, path, overrides, cpu=True, defaults=defaults)
        data.reward_config("qwen2_5_vl")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_config_file_is_a_cli_error(tmp_path, capsys):
    from mirg.cli import main

    assert main(["sft", "--config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mirg: error: config file not found") and "\n" not in err


def test_help_shows_the_options_that_matter(capsys):
    from mirg.cli import main

    for verb, keys in (("sft", ["--config", "--resume", "assistant_only_loss", "freeze_vision", "use_peft"]),
                       ("rl", ["--config", "num_generations", "beta", "w_image", "gated", "object_variant"])):  # fmt: skip
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        out = capsys.readouterr().out
        assert all(k in out for k in keys), verb


@pytest.mark.parametrize(
    "name",
    ["tiny/sft.yaml", "tiny/rl.yaml", "qwen2_5_vl_7b/sft.yaml", "qwen2_5_vl_7b/rl.yaml",
     "qwen2_5_vl_7b/rl_vllm_colocate.yaml", "qwen2_5_vl_7b/rl_vllm_server.yaml"],
)  # fmt: skip
def test_shipped_configs_parse(name):
    from mirg.training.config import parse_stage_config
    from mirg.training.stage_cli import stage_types

    stage = "sft" if name.endswith("sft.yaml") else "rl"
    types, defaults = stage_types(stage)
    (data, train, model), _ = parse_stage_config(
        types, REPO / "configs" / name, [], cpu=True, defaults=defaults
    )
    assert data.train_file and train.output_dir and model.model_name_or_path
    if stage == "rl":
        data.reward_config("qwen2_5_vl")
        world = 8  # one 8-GPU node (server mode: 7 training processes)
        if "server" in name:
            world = 7
        if "qwen2_5_vl_7b" in name:
            assert train.per_device_train_batch_size * world % train.num_generations == 0
            assert train.use_vllm == ("vllm" in name)


def test_real_size_configs_build_on_the_meta_device(capsys):
    """The 7B configs parse and the Qwen2.5-VL-7B architecture builds on the meta device (no GPU, no weights)."""
    from mirg.cli import main

    for stage in ("sft", "rl"):
        assert main([stage, "--config", str(REPO / f"configs/qwen2_5_vl_7b/{stage}.yaml"), "--check"]) == 0
        out = capsys.readouterr().out
        assert "qwen2_5_vl with 8.29B parameters built on the meta device" in out
        assert "vision parameters would freeze" in out


def test_vllm_image_limit_from_the_data(make_samples, tmp_path, capsys, monkeypatch):
    """TRL never passes vLLM's limit_mm_per_prompt: --check says what the data needs (a warning in server mode or
    when the config's limit is short), and colocate mode builds TRL's engine with the data's most images."""
    from types import SimpleNamespace

    import trl.generation.vllm_generation as vg

    from mirg.cli import main
    from mirg.training.config import RLDataArguments
    from mirg.training.rl import colocated_vllm_image_limit, vllm_image_limit

    data = make_rl_data(make_samples, tmp_path / "synth", 4, max_images=3)
    most = max(len(json.loads(line)["images"]) for line in data.read_text().splitlines())
    assert most >= 2
    for name, expect in (
        ("rl_vllm_server", "WARNING: vLLM server mode"),
        ("rl_vllm_colocate", "vLLM colocate"),
    ):
        cfg = str(REPO / f"configs/qwen2_5_vl_7b/{name}.yaml")
        assert main(["rl", "--config", cfg, "--check", "--train_file", str(data)]) == 0
        assert f"{expect}" in (out := capsys.readouterr().out) and f"up to {most} images" in out
    assert main(["rl", "--config", cfg, "--check", "--train_file", str(data), "--vllm_image_limit", "1"]) == 0
    assert "above vllm_image_limit=1" in capsys.readouterr().out

    colocate = SimpleNamespace(use_vllm=True, vllm_mode="colocate")
    assert vllm_image_limit(RLDataArguments(), colocate, most) == most
    assert (
        vllm_image_limit(RLDataArguments(), SimpleNamespace(use_vllm=False, vllm_mode="colocate"), most)
        is None
    )
    with pytest.raises(MirgError, match="above vllm_image_limit=1"):
        vllm_image_limit(RLDataArguments(vllm_image_limit=1), colocate, most)
    built = []
    monkeypatch.setattr(vg, "LLM", lambda **kw: built.append(kw), raising=False)
    with colocated_vllm_image_limit(most):
        vg.LLM(model="m")
    vg.LLM(model="m")  # restored after the trainer is built
    assert built == [{"model": "m", "limit_mm_per_prompt": {"image": most}}, {"model": "m"}]


# ---------------------------------------------------------------------------------------------- data
def test_trajectories_become_an_sft_dataset(data):
    from PIL import Image

    from mirg.training.data import load_trajectories

    _, traj = data
    ds = load_trajectories(traj)
    row = ds[0]
    assert len(ds) == 8 and isinstance(row["images"][0], Image.Image)
    n_placeholders = sum(p["type"] == "image" for m in row["messages"] for p in m["content"])
    assert n_placeholders == len(row["images"]) and row["messages"][-1]["role"] == "assistant"


def test_trajectory_errors_name_the_problem(tmp_path, data):
    from mirg.training.data import load_trajectories

    _, traj = data
    rec = json.loads(traj.read_text().splitlines()[0])
    bad = tmp_path / "t.jsonl"
    bad.write_text(json.dumps({**rec, "images": [*rec["images"], "x.png"]}) + "\n")
    with pytest.raises(DataError, match=r"t.jsonl:1: field 'images': \d image placeholders"):
        load_trajectories(bad)
    rec["images"] = [str(Path("missing") / "x.png")] * len(rec["images"])
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(ImageError, match="missing"):
        load_trajectories(bad)
    with pytest.raises(MirgError, match="trajectory file not found"):
        load_trajectories(tmp_path / "none.jsonl")


def test_rl_dataset_columns_and_resized_sizes_match_the_processor(data, tiny_model_dir):
    from mirg.models.loading import load_processor
    from mirg.prompting import resized_sizes
    from mirg.training.data import rl_dataset

    samples, _ = data
    processor = load_processor(tiny_model_dir)
    ds, skipped = rl_dataset(samples, "qwen2_5_vl", processor)
    assert skipped == 0 and {"prompt", "images", "target_image", "target_box", "resized_sizes"} <= set(
        ds.features
    )
    for row in ds:
        text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        enc = processor(images=row["images"], text=[text], return_tensors="pt")
        assert [list(s) for s in resized_sizes(enc["image_grid_thw"])] == row["resized_sizes"]
        assert 1 <= row["target_image"] <= len(row["images"]) and row["prompt"][0]["role"] == "user"


# ---------------------------------------------------------------------------------------------- model helpers
def test_freeze_vision_and_lora_targets(tiny_model_dir):
    import re

    from trl import ModelConfig

    from mirg.training.modeling import freeze_vision, load_policy, lora_config

    policy = load_policy(ModelConfig(model_name_or_path=str(tiny_model_dir)))
    frozen = freeze_vision(policy.model)
    names = {n for n, p in policy.model.named_parameters() if not p.requires_grad}
    assert frozen > 0 and names and all("visual." in n for n in names)
    assert any("visual." in n for n, _ in policy.model.named_parameters())
    cfg = lora_config(ModelConfig(use_peft=True, lora_r=4), freeze_vision=True)
    modules = [n for n, _ in policy.model.named_modules()]
    hit = [n for n in modules if re.fullmatch(cfg.target_modules, n)]
    assert hit and not any("visual" in n for n in hit) and any("mlp.gate_proj" in n for n in hit)
    assert lora_config(ModelConfig(use_peft=False)) is None


# ---------------------------------------------------------------------------------------------- GRPO sanity
def test_grpo_equal_rewards_give_zero_advantages_and_the_policy_does_not_move(data, tiny_model_dir, tmp_path):
    """Every completion of a group scores the same: TRL's group-normalised advantages are 0 (std 0 -> (r - mean)
    / (0 + 1e-4) = 0), the clipped loss is 0, and with beta=0 (no KL pull) one optimizer step leaves every
    parameter exactly where it was."""
    import torch
    from trl import GRPOTrainer

    from mirg.training.config import parse_stage_config
    from mirg.training.modeling import load_policy
    from mirg.training.stage_cli import stage_types

    samples, _ = data
    types, defaults = stage_types("rl")
    (_, args, model_args), _ = parse_stage_config(
        types, None, rl_overrides(tiny_model_dir, samples, tmp_path, steps=1), cpu=True, defaults=defaults
    )
    policy = load_policy(model_args)
    policy.processor.tokenizer.padding_side = "left"
    from mirg.models.loading import load_processor
    from mirg.training.data import rl_dataset

    ds, _ = rl_dataset(samples, "qwen2_5_vl", load_processor(tiny_model_dir))

    def constant_reward(completions, **kwargs):
        return [0.7] * len(completions)

    trainer = GRPOTrainer(
        model=policy.model, reward_funcs=[constant_reward], args=args, train_dataset=ds,
        processing_class=policy.processor,
    )  # fmt: skip
    advantages = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        out = original(inputs)
        advantages.append(out["advantages"].detach().clone())
        return out

    trainer._generate_and_score_completions = spy
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert advantages and all(torch.count_nonzero(a) == 0 for a in advantages)
    for n, p in trainer.model.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert logged[0]["reward"] == pytest.approx(0.7) and logged[0]["frac_reward_zero_std"] == 1.0


# ---------------------------------------------------------------------------------------------- short runs
def test_sft_cli_checkpoints_resumes_and_logs(data, tiny_model_dir, tmp_path):
    from mirg.cli import main
    from mirg.training.metrics import read_metrics

    _, traj = data
    out = tmp_path / "sft"
    cfg = write_yaml(tmp_path / "sft.yaml", {"save_strategy": "steps", "save_steps": 2})
    base = ["sft", "--config", str(cfg), *sft_overrides(tiny_model_dir, traj, out, steps=2)]
    base.remove("--save_strategy")
    base.remove("no")
    assert main(base) == 0
    assert (out / "checkpoint-2").is_dir() and (out / "model.safetensors").is_file()
    assert (out / "preprocessor_config.json").is_file() or (out / "processor_config.json").is_file()
    assert main([*base, "--max_steps", "3", "--resume"]) == 0
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == [1, 2, 3]  # the resumed run continued at step 3
    assert main([*base, "--resume", str(tmp_path / "nowhere")]) == 2


def test_rl_from_sft_output_logs_each_reward_term(data, tiny_model_dir, tmp_path):
    from mirg.training.config import parse_stage_config
    from mirg.training.metrics import read_metrics
    from mirg.training.rl import train_rl
    from mirg.training.sft import train_sft
    from mirg.training.stage_cli import stage_types

    samples, traj = data
    types, defaults = stage_types("sft")
    parsed, _ = parse_stage_config(
        types, None, sft_overrides(tiny_model_dir, traj, tmp_path / "sft", steps=1, use_peft="true", lora_r=4),
        cpu=True, defaults=defaults,
    )  # fmt: skip
    train_sft(*parsed)
    assert (tmp_path / "sft" / "adapter_config.json").is_file()  # LoRA: the adapter is saved

    types, defaults = stage_types("rl")
    parsed, _ = parse_stage_config(
        types, None, rl_overrides(tmp_path / "sft", samples, tmp_path / "rl", steps=2, freeze_vision="true"),
        cpu=True, defaults=defaults,
    )  # fmt: skip
    result = train_rl(*parsed)
    assert result.global_step == 2
    logged = [r for r in read_metrics(tmp_path / "rl") if "reward" in r]
    assert len(logged) == 2
    for r in logged:
        for term in ("format_reward", "image_reward", "object_reward"):
            assert 0.0 <= r[f"rewards/{term}/mean"] <= 1.0
        total = sum(r[f"rewards/{t}_reward/mean"] for t in ("format", "image", "object"))
        assert r["reward"] == pytest.approx(total, abs=1e-5)


@pytest.mark.parametrize("name, kind", [("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.value == kind and cfg.num_processes == 8 and cfg.mixed_precision == "bf16"
