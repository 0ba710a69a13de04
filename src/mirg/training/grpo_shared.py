"""GRPO that encodes each prompt once per group (issue 30): a subclass of TRL's ``GRPOTrainer``, no fork.

TRL repeats every prompt G times and runs the vision tower and the prompt's tokens once per completion, in
generation and in every log-prob forward (policy with grad, old policy, reference). For MIRG-RL's multi-image
prompts most tokens are the prompt. :class:`SharedPromptGRPOTrainer` overrides three methods:

* ``_get_per_token_logps_and_entropies`` (policy, old policy and reference all go through it): the rows of one
  call that hold the same prompt (ids and images) become ONE packed row ``[prompt[:-1], (p, c1), (p, c2), ...]``
  where ``p`` is the prompt's last token repeated at the head of each completion block. A 4-D block mask lets
  each block see the prompt and its own causal prefix; explicit 3-D mRoPE positions put ``p`` at its prompt
  position and the completion right after it. Each block's ``p`` then predicts its completion's first token, so
  every scored position has one label and TRL's own fused LM head (temperature, entropy, fp32 head) scores it
  through ``shift_labels``. One ordinary forward: gradient checkpointing, LoRA, ZeRO/FSDP work unchanged.
* ``_prepare_inputs``: shuffles the generation batch by prompt group, not by row, so that with
  ``steps_per_generation > 1`` a prompt's completions stay in one micro-batch where the sizes allow.
* ``_generate_single_turn`` (transformers path only): one prefill per distinct prompt, its cache repeated over
  the rows that share it, then TRL's ``generate`` call continues from that cache.

docs/training.md ("Prompt sharing") has the design choice, the limits and the measurements.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

from mirg.errors import MirgError

log = logging.getLogger("mirg.training")

# [low, high): the TRL versions whose internals this subclass was checked against
TESTED_TRL = ("1.16", "1.17")
# tested; Qwen2-VL (same rope index) falls back to TRL's path until a test covers it
FAMILIES = ("qwen2_5_vl",)
MASKS = ("sdpa", "eager")  # attention implementations that take an arbitrary 4-D mask


def check_trl_version(version: str | None = None) -> None:
    """MirgError unless the installed TRL (or ``version``) is in the tested range."""
    import trl
    from packaging.version import Version

    v = Version(version or trl.__version__)
    lo, hi = TESTED_TRL
    if not Version(lo) <= v < Version(hi):
        raise MirgError(
            f"share_prompt is tested with trl>={lo},<{hi} (installed: {v}); install that or set share_prompt: false"
        )


def _inner(model: Any) -> Any:
    """The Qwen VL model under DDP / PEFT wrappers (the object owning ``model.get_rope_index``)."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def _image_rows(tokens: list[int], grid: torch.Tensor | None, merge: int) -> list[tuple[slice, slice]]:
    """Per row, from its count of image tokens: (its rows of ``image_grid_thw``, its rows of ``pixel_values``)."""
    if grid is None:
        return [(slice(0, 0), slice(0, 0))] * len(tokens)
    patches = grid.prod(-1).tolist()
    out, img, pix = [], 0, 0
    for t in tokens:
        g0, p0 = img, pix
        while t > 0:
            t -= patches[img] // merge**2
            pix += patches[img]
            img += 1
        out.append((slice(g0, img), slice(p0, pix)))
    return out


def group_rows(prompts: list[torch.Tensor], grids: list[Any], pixels: list[Any]) -> list[list[int]]:
    """Rows holding the same prompt ids and the same images (exact equality), grouped in first-seen order."""
    groups: list[list[int]] = []
    index: dict[tuple, list[int]] = {}
    for r, ids in enumerate(prompts):
        key = (tuple(ids.tolist()), tuple(grids[r].flatten().tolist()) if grids[r] is not None else ())
        for gi in index.setdefault(key, []):
            rep = groups[gi][0]
            if pixels[r] is None or torch.equal(pixels[rep], pixels[r]):
                groups[gi].append(r)
                break
        else:
            index[key].append(len(groups))
            groups.append([r])
    return groups


def positions(model: Any, ids: torch.Tensor, mask: torch.Tensor, grid: Any) -> torch.Tensor:
    """(3, B, L) mRoPE positions of left-padded prompts ``ids`` (B, L), as the model computes them."""
    inner = _inner(model)
    mm = (ids == inner.config.image_token_id).long() * mask
    if grid is not None and bool(mm.any()):
        return inner.model.get_rope_index(ids, mm, image_grid_thw=grid, attention_mask=mask)[0]
    return ((mask.long().cumsum(-1) - 1).clamp(min=0) * mask).expand(3, -1, -1)


def pack_group(prompt: torch.Tensor, pos: torch.Tensor, completions: list[torch.Tensor]) -> dict[str, Any]:
    """One packed row ``[prompt[:-1], (p, c1), ..., (p, cG)]`` (``p`` = the prompt's last token): ids, (3, L)
    positions, segment ids (0 = prompt, k = block k), next-token labels (-100 = not scored), block starts."""
    n, dev = prompt.numel(), prompt.device
    ids, pos_, seg, labels, starts = [prompt[:-1]], [pos[:, :-1]], [prompt.new_zeros(n - 1)], [], []
    labels.append(prompt.new_full((n - 1,), -100))
    nxt, at = int(pos.max()) + 1, n - 1
    for k, c in enumerate(completions, start=1):
        m = c.numel()
        starts.append(at)
        ids.append(torch.cat([prompt[-1:], c]))
        pos_.append(torch.cat([pos[:, -1:], (nxt + torch.arange(m, device=dev)).expand(3, -1)], dim=1))
        seg.append(prompt.new_full((m + 1,), k))
        labels.append(torch.cat([c, c.new_full((1,), -100)]))
        at += m + 1
    cat = torch.cat
    return {"ids": cat(ids), "pos": cat(pos_, 1), "seg": cat(seg), "labels": cat(labels), "starts": starts}


def block_mask(seg: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) bool mask from segment ids (B, L) (-1 = padding): causal, and a completion block sees only the
    prompt (segment 0) and itself. Padding attends to itself so that its softmax stays finite."""
    L = seg.size(1)
    causal = torch.ones(L, L, dtype=torch.bool, device=seg.device).tril()
    qs, ks = seg[:, :, None], seg[:, None, :]
    allowed = causal & ((ks == 0) | (ks == qs)) & (qs >= 0)
    return (allowed | torch.eye(L, dtype=torch.bool, device=seg.device))[:, None]


def _pad_stack(xs: list[torch.Tensor], length: int, value: float) -> torch.Tensor:
    return torch.stack([torch.nn.functional.pad(x, (0, length - x.size(-1)), value=value) for x in xs])


def _prompt_rows(model: Any, ids: torch.Tensor, mask: torch.Tensor, grid: Any, pixels: Any) -> tuple:
    """Per row of left-padded prompts: its unpadded ids, image grid rows and pixel rows; and the prompt groups."""
    inner = _inner(model)
    merge = inner.config.vision_config.spatial_merge_size
    tokens = ((ids == inner.config.image_token_id) & mask.bool()).sum(1).tolist()
    rows = _image_rows(tokens, grid, merge)
    prompts = [ids[r][mask[r].bool()] for r in range(ids.size(0))]
    grids = [None if grid is None else grid[g] for g, _ in rows]
    pix = [None if pixels is None else pixels[p] for _, p in rows]
    return prompts, grids, pix, group_rows(prompts, grids, pix)


def shared_logps(trainer: Any, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                 batch_size: int | None, compute_entropy: bool, pixel_values: Any, image_grid_thw: Any) -> Any:  # fmt: skip
    """Per-token log-probs (and entropies) of the completions, one packed row per prompt group; None when the
    batch has nothing to share or a shape this path does not handle (TRL's path then runs)."""
    N, C = input_ids.size(0), logits_to_keep
    P = input_ids.size(1) - C
    cmask = attention_mask[:, P:].bool()
    lengths = cmask.sum(1)
    if not torch.equal(cmask, torch.arange(C, device=cmask.device)[None] < lengths[:, None]):
        return None  # a completion mask that is not a prefix
    pmask = attention_mask[:, :P]
    prompts, grids, pix, groups = _prompt_rows(model, input_ids[:, :P], pmask, image_grid_thw, pixel_values)
    if len(groups) == N:
        return None
    inner = _inner(model)
    eager = inner.config.get_text_config()._attn_implementation == "eager"
    # whole groups, at most batch_size rows per forward (one group at least)
    chunks: list[list[list[int]]] = [[]]
    for g in groups:
        if chunks[-1] and batch_size and sum(map(len, chunks[-1])) + len(g) > batch_size:
            chunks.append([])
        chunks[-1].append(g)
    lp: list[Any] = [None] * N
    ent: list[Any] = [None] * N
    for chunk in chunks:
        reps = [g[0] for g in chunk]
        grid = None if image_grid_thw is None else torch.cat([grids[r] for r in reps])
        pos = positions(model, input_ids[reps, :P], pmask[reps], grid)
        packs = [
            pack_group(
                prompts[r], pos[:, u][:, pmask[r].bool()], [input_ids[i, P : P + lengths[i]] for i in g]
            )
            for u, (r, g) in enumerate(zip(reps, chunk, strict=True))
        ]
        L = max(p["ids"].numel() for p in packs)
        mask = block_mask(_pad_stack([p["seg"] for p in packs], L, -1))
        # eager adds the mask to the scores: 0 / most negative floats (a bool mask is silently wrong)
        if eager:
            mask = torch.zeros(mask.shape, dtype=inner.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(inner.dtype).min
            )
        inputs = {
            "input_ids": _pad_stack([p["ids"] for p in packs], L, 0),
            "attention_mask": mask,
            "position_ids": _pad_stack([p["pos"] for p in packs], L, 0).transpose(0, 1),
            "shift_labels": _pad_stack([p["labels"] for p in packs], L, -100),
        }
        if grid is not None:
            inputs.update(pixel_values=torch.cat([pix[r] for r in reps]), image_grid_thw=grid)
        with trainer.accelerator.autocast():
            out = model(**inputs, fused_lm_head=True)
        for b, (g, p) in enumerate(zip(chunk, packs, strict=True)):
            for r, s in zip(g, p["starts"], strict=True):
                lp[r] = out.log_probs[b, s : s + lengths[r]]
                if compute_entropy:
                    ent[r] = out.entropy[b, s : s + lengths[r]]
    return _pad_stack(lp, C, 0.0), _pad_stack(ent, C, 0.0) if compute_entropy else None, None


def shared_generate(model: Any, original: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    pixel_values: Any = None, image_grid_thw: Any = None, **kwargs: Any) -> torch.Tensor:  # fmt: skip
    """``model.generate`` with one prefill per distinct prompt: the prompts but their last token run once, the
    cache is repeated over the rows sharing it, and ``generate`` continues from it (sampling unchanged)."""
    config = kwargs.get("generation_config")
    extra = set(kwargs) - {"generation_config", "mm_token_type_ids"}
    prompts, grids, pix, groups = _prompt_rows(model, input_ids, attention_mask, image_grid_thw, pixel_values)
    if extra or len(groups) == len(prompts) or getattr(config, "cache_implementation", None):
        if pixel_values is not None:
            kwargs.update(pixel_values=pixel_values, image_grid_thw=image_grid_thw)
        return original(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    reps = [g[0] for g in groups]
    inv = torch.empty(len(prompts), dtype=torch.long)
    for gi, g in enumerate(groups):
        inv[g] = gi
    inv = inv.to(input_ids.device)
    ids, mask = input_ids[reps, :-1], attention_mask[reps, :-1]
    grid = None if image_grid_thw is None else torch.cat([grids[r] for r in reps])
    pos = positions(model, ids, mask, grid)
    pre = {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": pos,
        "use_cache": True,
        "logits_to_keep": 1,
    }
    if grid is not None:
        pre.update(pixel_values=torch.cat([pix[r] for r in reps]), image_grid_thw=grid)
    cache = model(**pre).cache
    cache.reorder_cache(inv)
    # generate places the uncached last token at (its text position + rope_deltas): the prompt's next position
    _inner(model).model.rope_deltas = (pos.amax(dim=(0, 2)) + 1 - mask.sum(1))[inv, None]
    return original(input_ids=input_ids, attention_mask=attention_mask, cache=cache, generation_config=config)


def _permute(batch: dict[str, Any], perm: list[int]) -> dict[str, Any]:
    """TRL's ``shuffle_sequence_dict`` with a given permutation."""

    def apply(v: Any) -> Any:
        if v is None or (isinstance(v, torch.Tensor) and v.ndim == 0):
            return v
        return v[torch.tensor(perm)] if isinstance(v, torch.Tensor) else [v[i] for i in perm]

    return {k: apply(v) for k, v in batch.items()}


class SharedPromptGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer with each prompt encoded once per group (``share_prompt``; see the module docstring)."""

    def __init__(self, *args: Any, share_prompt: bool = True, **kwargs: Any) -> None:
        if share_prompt:
            check_trl_version()
        super().__init__(*args, **kwargs)
        self.share_prompt = share_prompt
        self._share_warned = False

    def _can_share(self, model: Any) -> bool:
        cfg = _inner(model).config
        attn = cfg.get_text_config()._attn_implementation
        ok = cfg.model_type in FAMILIES and attn in MASKS
        if not ok and not self._share_warned:
            log.warning("share_prompt: %s with %s attention is not shared (needs %s with %s): TRL's path runs",
                        cfg.model_type, attn, "/".join(FAMILIES), "/".join(MASKS))  # fmt: skip
            self._share_warned = True
        return ok

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, pixel_values=None,
                                           image_grid_thw=None, **kwargs):  # fmt: skip
        other = {k for k, v in kwargs.items() if v is not None} - {"num_images", "mm_token_type_ids"}
        if self.share_prompt and not compute_aux_loss and not other and self._can_share(model):
            out = shared_logps(self, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                               pixel_values, image_grid_thw)  # fmt: skip
            if out is not None:
                return out
        return super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
            pixel_values=pixel_values, image_grid_thw=image_grid_thw, **kwargs,
        )  # fmt: skip

    def _prepare_inputs(self, generation_batch: dict[str, Any]) -> dict[str, Any]:
        # TRL shuffles rows before splitting the generation batch into steps_per_generation micro-batches; shuffle
        # prompt groups instead so that a prompt's completions share a micro-batch (a forward) where sizes allow.
        spg = self.args.steps_per_generation
        if not (self.share_prompt and self.model.training and spg > 1):
            return super()._prepare_inputs(generation_batch)
        if self._step % (spg * self.num_iterations) == 0 or self._buffered_inputs is None:
            batch = split_pixel_values_by_grid(self._generate_and_score_completions(generation_batch))
            grids, pix = batch.get("image_grid_thw"), batch.get("pixel_values")
            n = batch["prompt_ids"].size(0)
            prompts = [batch["prompt_ids"][r][batch["prompt_mask"][r].bool()] for r in range(n)]
            groups = group_rows(prompts, grids or [None] * n, pix or [None] * n)
            perm = [r for gi in torch.randperm(len(groups)).tolist() for r in groups[gi]]
            batches = split_tensor_dict(_permute(batch, perm), spg)
            self._buffered_inputs = [unsplit_pixel_values_by_grid(b) for b in batches]
        return self._buffered_inputs[self._step % spg]

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        shared = self.share_prompt and not (self.use_vllm or self.use_transformers_continuous_batching)
        # what TRL's unwrap_model_for_generation yields
        target = self.accelerator.unwrap_model(self.model_wrapped)
        if shared and not has_tool_images and self._can_share(target):
            target.generate = functools.partial(shared_generate, target, target.generate)
        try:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)  # fmt: skip
        finally:
            target.__dict__.pop("generate", None)
