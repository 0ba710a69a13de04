import pytest

from mirg.rewards import RewardConfig, reward_terms, trl_reward_functions

GT_IMG, GT_BOX, N = 2, (0.25, 0.25, 0.75, 0.75), 3
SIZES = [(280, 140), (200, 100), (56, 56)]  # resized (w, h) per image; image 2 is 200x100 px

Q25 = RewardConfig(dialect="qwen2_5_vl")
Q2 = RewardConfig(dialect="qwen2_vl")


def q25(image, box, think="Image-2 shows it."):
    return f'<think>{think}</think>\n<answer>{{"image": {image}, "bbox_2d": {list(box)}}}</answer>'


def q2(image, box, think="Image-2 shows it."):
    x1, y1, x2, y2 = box
    return f"<think>{think}</think><answer>Image-{image} <|box_start|>({x1},{y1}),({x2},{y2})<|box_end|></answer>"


def terms(text, cfg=Q25):
    return reward_terms(text, GT_IMG, GT_BOX, N, SIZES, cfg)


CORRECT_25 = q25(2, [50, 25, 150, 75])  # exactly the ground truth in image 2's 200x100 pixels
CORRECT_2 = q2(2, [250, 250, 750, 750])


def test_hand_computed_values_both_dialects():
    t = terms(CORRECT_25)
    assert (t.format, t.image, t.object, t.total) == (1.0, 1.0, 1.0, 3.0)
    t = terms(CORRECT_2, Q2)
    assert (t.format, t.image, t.object, t.total) == (1.0, 1.0, 1.0, 3.0)
    # half-width box in the right image: IoU = 0.5
    t = terms(q25(2, [50, 25, 100, 75]))
    assert t.object == pytest.approx(0.5) and t.total == pytest.approx(2.5)
    t = terms(q2(2, [250, 250, 500, 750]), Q2)
    assert t.object == pytest.approx(0.5)
    # variants
    assert terms(q25(2, [50, 25, 100, 75]), RewardConfig(object_variant="threshold")).object == 1.0
    assert terms(q25(2, [50, 25, 90, 75]), RewardConfig(object_variant="threshold")).object == 0.0
    far = q25(2, [0, 0, 20, 10])  # disjoint: GIoU < 0, mapped into [0, 0.5)
    g = terms(far, RewardConfig(object_variant="giou")).object
    assert 0.0 <= g < 0.5
    # weights
    t = terms(q25(2, [50, 25, 100, 75]), RewardConfig(w_format=0.5, w_image=2.0, w_object=4.0))
    assert t.total == pytest.approx(0.5 + 2.0 + 2.0)


def test_pixels_use_the_named_images_resized_size():
    # the same pixel box means different normalized boxes in images of different sizes
    t = terms(q25(1, [70, 35, 210, 105]), RewardConfig(gated=False))  # image 1 is 280x140: GT box there
    assert t.image == 0.0 and t.object == pytest.approx(1.0)


def test_gated_object_reward_is_zero_in_the_wrong_image():
    wrong = q25(1, [70, 35, 210, 105])
    t = terms(wrong)
    assert t.image == 0.0 and t.object == 0.0 and t.total == 1.0
    t = terms(q2(3, [250, 250, 750, 750]), Q2)
    assert t.object == 0.0 and t.total == 1.0
    # ungated (object-only ablation) pays for the box wherever it is
    assert terms(q2(3, [250, 250, 750, 750]), RewardConfig(dialect="qwen2_vl", gated=False)).object == 1.0


ADVERSARIAL_25 = {
    "two answers": CORRECT_25 + '<answer>{"image": 1, "bbox_2d": [1, 1, 5, 5]}</answer>',
    "two boxes": '<think>x</think><answer>[{"image": 2, "bbox_2d": [50, 25, 150, 75]}, {"image": 2, "bbox_2d": [0, 0, 200, 100]}]</answer>',
    "empty answer": "<think>x</think><answer></answer>",
    "box outside the image": q25(2, [50, 25, 250, 75]),
    "answer before think": '<answer>{"image": 2, "bbox_2d": [50, 25, 150, 75]}</answer><think>x</think>',
    "huge text": q25(2, [50, 25, 150, 75], think="blah " * 10000),
    "wrong image, perfect box": q25(1, [70, 35, 210, 105]),
    "image out of range": q25(7, [50, 25, 150, 75]),
    "no tags": '{"image": 2, "bbox_2d": [50, 25, 150, 75]}',
    "garbage": "\x00<answer>{{{</answer",
    "whole image": q25(2, [0, 0, 200, 100]),
    "not text": None,
}  # fmt: skip

ADVERSARIAL_2 = {
    "two boxes": "<think>x</think><answer>Image-2 (250,250),(750,750) (0,0),(999,999)</answer>",
    "two images": "<think>x</think><answer>Image-2 Image-3 <|box_start|>(250,250),(750,750)<|box_end|></answer>",
    "inverted box": q2(2, [750, 250, 250, 750]),
    "wrong image, perfect box": q2(1, [250, 250, 750, 750]),
    "box past 1000": q2(2, [250, 250, 1750, 750]),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_25))
def test_adversarial_never_beats_correct_qwen25(name):
    correct = terms(CORRECT_25).total
    t = terms(ADVERSARIAL_25[name])
    assert t.total < correct, (name, t)
    assert 0.0 <= t.total <= 3.0


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_2))
def test_adversarial_never_beats_correct_qwen2(name):
    assert terms(ADVERSARIAL_2[name], Q2).total < terms(CORRECT_2, Q2).total


def test_specific_guards():
    assert terms(ADVERSARIAL_25["two answers"]).total == 0.0
    assert terms(ADVERSARIAL_25["huge text"]).total == 0.0
    t = terms(ADVERSARIAL_25["box outside the image"])
    assert t.format == 0.0 and t.object == 0.0 and t.image == 1.0
    t = terms(ADVERSARIAL_25["answer before think"])
    assert t.format == 0.0


def test_trl_wrappers_read_columns_and_conversational_completions():
    funcs = trl_reward_functions(Q25)
    assert [f.__name__ for f in funcs] == ["format_reward", "image_reward", "object_reward"]
    completions = [
        [{"role": "assistant", "content": CORRECT_25}],
        [{"role": "assistant", "content": [{"type": "text", "text": "junk"}]}],
    ]
    cols = dict(
        target_image=[2, 2],
        target_box=[list(GT_BOX)] * 2,
        images=[["a", "b", "c"]] * 2,
        resized_sizes=[SIZES] * 2,
    )
    assert [f(prompts=None, completions=completions, **cols) for f in funcs] == [
        [1.0, 0.0],
        [1.0, 0.0],
        [1.0, 0.0],
    ]
    assert Q25.weights == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="resized"):
        funcs[0](completions=[CORRECT_25], target_image=[2], target_box=[GT_BOX], images=[["a", "b", "c"]])


def test_config_validation():
    with pytest.raises(ValueError):
        RewardConfig(object_variant="dice")
    with pytest.raises(ValueError):
        RewardConfig(dialect="llava")
