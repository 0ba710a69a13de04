"""Prompt sharing in GRPO (mirg.training.grpo_shared): the packed path computes what TRL's path computes.

Each case builds a real GRPO generation batch on the tiny Qwen2.5-VL (fp32; prompts of 1-3 images and different
lengths; completion lengths varied by hand) and compares, shared vs TRL's own ``_get_per_token_logps_and_entropies``:
per-token log-probs and entropies (max abs diff <= 1e-5), the GRPO loss, and every trainable gradient (max abs diff
over the tensor's max abs, <= 1e-4).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mirg.errors import MirgError  # noqa: E402

LOGP_TOL, GRAD_TOL = 1e-5, 1e-4
SUPPRESS = [
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
]  # random weights emit anything


def _reward(completions, **kwargs):
    return [(sum(map(ord, str(c))) % 7) / 7 for c in completions]  # deterministic, varied within a group


def small_samples(folder: Path) -> Path:
    """8 Samples of 1-3 images (conftest's maker), downscaled to <= 84 px so that steps stay fast."""
    from conftest import make_synthetic_samples
    from PIL import Image

    path = make_synthetic_samples(folder, 8, seed=3, max_images=3)
    for p in sorted(folder.rglob("*.png")):
        with Image.open(p) as im:
            s = 84 / max(im.size)
            im.resize((max(28, round(im.size[0] * s)), max(28, round(im.size[1] * s)))).save(p)
    return path


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory, tiny_model_dir):
    from mirg.models.loading import load_processor
    from mirg.training.data import rl_dataset

    samples = small_samples(tmp_path_factory.mktemp("grpo-shared"))
    return rl_dataset(samples, "qwen2_5_vl", load_processor(tiny_model_dir))[0]


def make_trainer(model_dir, dataset, out, peft=False, attn=None, **overrides):
    from trl import GRPOConfig, ModelConfig

    from mirg.training.grpo_shared import SharedPromptGRPOTrainer
    from mirg.training.modeling import load_policy

    torch.manual_seed(0)
    policy = load_policy(
        ModelConfig(model_name_or_path=str(model_dir), dtype="float32", attn_implementation=attn)
    )
    policy.processor.tokenizer.padding_side = "left"
    tok = policy.processor.tokenizer
    args = {"per_device_train_batch_size": 12, "num_generations": 3, "max_completion_length": 12, "beta": 0.0,
            "max_steps": 1, "learning_rate": 1e-3, "use_cpu": True, "bf16": False, "report_to": "none",
            "remove_unused_columns": False, "save_strategy": "no", "logging_steps": 1, "seed": 0,
            "generation_kwargs": {"suppress_tokens": tok.convert_tokens_to_ids(SUPPRESS)}, **overrides}  # fmt: skip
    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "gate_proj"])
    return SharedPromptGRPOTrainer(
        model=policy.model, reward_funcs=[_reward], args=GRPOConfig(output_dir=str(out), **args),
        train_dataset=dataset, processing_class=policy.processor, peft_config=peft_config,
    )  # fmt: skip


def generation_batch(trainer):
    """TRL's first micro-batch, completion lengths set to 12, 0, 1, ... (an EOS cut) so blocks differ."""
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    mask = inputs["completion_mask"]
    lengths = torch.tensor([(12, 0, 1, 7, 12, 3)[i % 6] for i in range(mask.size(0))])
    inputs["completion_mask"] = (torch.arange(mask.size(1))[None] < lengths[:, None]).to(mask.dtype)
    return inputs


def logps(trainer, model, inputs, shared, **kw):
    trainer.share_prompt = shared
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    mm = {k: inputs.get(k) for k in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")}
    with torch.no_grad():
        return trainer._get_per_token_logps_and_entropies(model, ids, mask, ids.size(1) - inputs["prompt_ids"].size(1),
                                                          **mm, **kw)  # fmt: skip


def loss_and_grads(trainer, inputs, shared):
    trainer.share_prompt = shared
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def compare(trainer, inputs):
    """Max diffs shared vs TRL: (log-prob, entropy, loss, relative gradient)."""
    a_lp, a_ent, _ = logps(trainer, trainer.model, inputs, False, compute_entropy=True)
    b_lp, b_ent, _ = logps(trainer, trainer.model, inputs, True, compute_entropy=True)
    a_loss, a_g = loss_and_grads(trainer, inputs, False)
    b_loss, b_g = loss_and_grads(trainer, inputs, True)
    assert a_lp.abs().max() > 0 and a_loss != 0, "degenerate batch"
    assert sum(int(torch.count_nonzero(g)) for g in a_g.values()) > 0
    rel = max(float((a_g[n] - b_g[n]).abs().max() / a_g[n].abs().max().clamp(min=1e-30)) for n in a_g)
    diffs = (
        (a_lp - b_lp).abs().max().item(),
        (a_ent - b_ent).abs().max().item(),
        abs(float(a_loss - b_loss)),
        rel,
    )
    print("diffs (logp, entropy, loss, grad rel):", diffs)
    assert diffs[0] <= LOGP_TOL and diffs[1] <= LOGP_TOL and diffs[2] <= LOGP_TOL and diffs[3] <= GRAD_TOL
    return diffs


def checkpointing(trainer):
    """Turn gradient checkpointing on as ``Trainer.train`` does (the tests call compute_loss directly)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.gradient_checkpointing_enable(
        gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
    )
    assert model.is_gradient_checkpointing and model.training


def assert_mixed(inputs):
    assert len(set(inputs["num_images"])) > 1 and len(set(inputs["prompt_mask"].sum(1).tolist())) > 1


# ---------------------------------------------------------------------------------------------- exactness
def test_logps_loss_and_grads_equal_trl(rl_data, tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, rl_data, tmp_path)
    inputs = generation_batch(trainer)
    assert_mixed(inputs)
    compare(trainer, inputs)


def test_eager_attention_and_gradient_checkpointing(rl_data, tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, rl_data, tmp_path, attn="eager", gradient_checkpointing=True)
    inputs = generation_batch(trainer)
    checkpointing(trainer)
    compare(trainer, inputs)


def test_lora_with_beta_reference_through_the_disabled_adapter(rl_data, tiny_model_dir, tmp_path):
    from trl.trainer.utils import use_adapter

    trainer = make_trainer(
        tiny_model_dir, rl_data, tmp_path, peft=True, beta=0.1, gradient_checkpointing=True
    )
    inputs = generation_batch(trainer)
    checkpointing(trainer)
    assert "ref_per_token_logps" in inputs
    with use_adapter(trainer.accelerator.unwrap_model(trainer.model), None):
        a, b = (logps(trainer, trainer.model, inputs, s)[0] for s in (False, True))
    assert (a - b).abs().max() <= LOGP_TOL
    compare(trainer, inputs)


def test_beta_with_a_reference_model_and_num_iterations(rl_data, tiny_model_dir, tmp_path):
    """beta > 0 (a separate reference model), num_iterations 2 with 2 accumulation steps: the old policy's log-probs
    are computed, and the group shuffle keeps each prompt's completions in one micro-batch."""
    trainer = make_trainer(tiny_model_dir, rl_data, tmp_path, beta=0.1, num_iterations=2,
                           per_device_train_batch_size=6, gradient_accumulation_steps=2)  # fmt: skip
    inputs = generation_batch(trainer)
    assert "old_per_token_logps" in inputs and "ref_per_token_logps" in inputs
    a, b = (logps(trainer, trainer.ref_model, inputs, s)[0] for s in (False, True))
    assert (a - b).abs().max() <= LOGP_TOL
    for part in trainer._buffered_inputs:  # 2 micro-batches of 6 rows = 2 whole groups of 3 each
        rows = [
            tuple(r[m.bool()].tolist()) for r, m in zip(part["prompt_ids"], part["prompt_mask"], strict=True)
        ]
        assert all(rows.count(r) == 3 for r in rows)
    compare(trainer, inputs)


def test_one_training_step_matches_trl(rl_data, tiny_model_dir, tmp_path):
    """A whole training step (generation, scoring, loss, backward, clipping) from the same seed: the same completions
    and the same gradients at the optimizer step (read there: the weight updates themselves sit near float32's
    resolution of the weights)."""
    from transformers import TrainerCallback

    grads, completions = [], []
    for shared in (False, True):
        trainer = make_trainer(tiny_model_dir, rl_data, tmp_path / str(shared))
        trainer.share_prompt = shared
        seen, got = [], {}
        original = trainer._generate_and_score_completions
        trainer._generate_and_score_completions = lambda x, f=original, s=seen: s.append(f(x)) or s[-1]

        class Grab(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, got=got, model=trainer.model, **kw):
                got.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})

        trainer.add_callback(Grab())
        trainer.train()
        completions.append(seen[0]["completion_ids"])
        grads.append(got)
    assert torch.equal(*completions)
    a, b = grads
    assert a.keys() == b.keys() and a
    rel = max(float((a[n] - b[n]).abs().max() / a[n].abs().max()) for n in a if a[n].abs().max() > 0)
    print("train step: max relative gradient diff", rel)
    assert rel <= GRAD_TOL


def test_generation_prefills_each_prompt_once_and_matches(rl_data, tiny_model_dir, tmp_path):
    from transformers import GenerationConfig

    from mirg.training.grpo_shared import shared_generate

    trainer = make_trainer(tiny_model_dir, rl_data, tmp_path)
    inputs = generation_batch(trainer)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    P = inputs["prompt_ids"].size(1)
    gen = {"input_ids": inputs["prompt_ids"], "attention_mask": inputs["prompt_mask"],
           "pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"],
           "mm_token_type_ids": inputs["mm_token_type_ids"][:, :P]}  # fmt: skip
    tok = trainer.processing_class.tokenizer
    config = GenerationConfig(max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id,
                              suppress_tokens=tok.convert_tokens_to_ids(SUPPRESS))  # fmt: skip
    vision_rows = []
    hook = model.model.visual.register_forward_hook(lambda m, a, o: vision_rows.append(a[0].size(0)))
    with torch.no_grad():
        expected = model.generate(**gen, generation_config=config)
        n_trl = sum(vision_rows)
        vision_rows.clear()
        got = shared_generate(model, model.generate, **gen, generation_config=config)
    hook.remove()
    assert torch.equal(expected, got)
    assert sum(vision_rows) * 3 == n_trl  # G = 3: the vision tower saw each prompt's images once


def test_untested_trl_is_refused_in_one_line():
    from mirg.training.grpo_shared import check_trl_version

    check_trl_version("1.16.3")
    with pytest.raises(
        MirgError, match=r"share_prompt is tested with trl>=1\.16,<1\.17 \(installed: 1\.17\.0\)"
    ):
        check_trl_version("1.17.0")


# ---------------------------------------------------------------------------------------------- 2 processes
SCRIPT = r"""
import json, os, sys
sys.path[:0] = [{tests!r}]
import torch
from test_grpo_shared import compare, generation_batch, make_trainer
from mirg.training.data import rl_dataset
from mirg.models.loading import load_processor
ds = rl_dataset({samples!r}, "qwen2_5_vl", load_processor({model!r}))[0]
trainer = make_trainer({model!r}, ds, {out!r}, per_device_train_batch_size=6)
inputs = generation_batch(trainer)
diffs = compare(trainer, inputs)
trainer.share_prompt = True
trainer.args.max_steps = 2
trainer.train()
rank = trainer.accelerator.process_index
json.dump({{"diffs": diffs, "steps": trainer.state.global_step, "world": trainer.accelerator.num_processes}},
          open(os.path.join({out!r}, f"rank{{rank}}.json"), "w"))
"""


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(tiny_model_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("the 2-process check runs on CPU (gloo)")
    from conftest import make_synthetic_samples

    from test_training import shrink_images

    samples = make_synthetic_samples(tmp_path / "data", 8, seed=3, max_images=3)
    shrink_images(tmp_path / "data", 84)
    script = tmp_path / "run.py"
    out = tmp_path / "out"
    out.mkdir()
    tests = str(Path(__file__).parent)
    script.write_text(
        SCRIPT.format(tests=tests, samples=str(samples), model=str(tiny_model_dir), out=str(out))
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([tests, str(Path(tests).parent)]),
    }
    # accelerate 1.x: `--cpu --num_processes 2` starts ONE process (its simple launcher); `--multi_gpu` on a machine
    # without CUDA starts 2 CPU processes through torchrun (gloo), which the world size check below asserts.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           str(script)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        result = json.loads((out / f"rank{rank}.json").read_text())
        assert result["world"] == 2 and result["steps"] == 2
        lp, _, loss, grad = result["diffs"]
        assert lp <= LOGP_TOL and loss <= LOGP_TOL and grad <= GRAD_TOL
