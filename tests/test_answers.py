import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirg.answers import (
    DIALECTS,
    Answer,
    NoAnswer,
    check_format,
    find_image_mentions,
    get_dialect,
    official_box,
)

QWEN25 = get_dialect("qwen2_5_vl")
QWEN2 = get_dialect("qwen2_vl")

# text that looks like answers: tags, brackets, digits, box tokens
_PIECES = [
    *"<>/[](){},.:-\"' 0123456789abcdeImgthinkswr\n",
    "<answer>", "</answer>", "<think>", "</think>", "<|box_start|>", "<|box_end|>", '"bbox_2d"', '"image"', "Image-",
]  # fmt: skip
answerish = st.lists(st.sampled_from(_PIECES), max_size=80).map("".join)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=300), answerish))
def test_parsers_never_raise(text):
    for d in DIALECTS.values():
        for strict in (True, False):
            r = d.parse(text, strict=strict)
            assert isinstance(r, Answer | NoAnswer)
            assert isinstance(d.check_answer(r, 3, (224, 168)), str)
    box = official_box(text)
    assert len(box) == 4
    assert isinstance(check_format(text), str)


def test_parsers_tolerate_non_text():
    for d in DIALECTS.values():
        assert isinstance(d.parse(None), NoAnswer)
        assert isinstance(d.parse(12), NoAnswer)
    assert official_box(None) == (0.0, 0.0, 0.0, 0.0)


@given(
    st.integers(1, 6),
    st.integers(0, 998),
    st.integers(0, 998),
    st.integers(1, 999),
    st.integers(1, 999),
    st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=80),
)
def test_render_parse_roundtrip_every_dialect(image, x1, y1, dx, dy, reasoning):
    box = (x1, y1, min(x1 + dx, 999), min(y1 + dy, 999))
    for d in DIALECTS.values():
        text = d.render_completion(reasoning, image, box)
        assert (check_format(text) == "") == bool(reasoning.strip())  # empty reasoning is not the format
        r = d.parse(text)
        assert r == Answer(image, tuple(float(v) for v in box)), (d.name, text)


def test_hand_examples():
    text = '<think>Image-1 has a red circle; Image-2 has it too.</think>\n<answer>{"image": 2, "bbox_2d": [10, 20, 30, 40]}</answer>'
    assert QWEN25.parse(text) == Answer(2, (10.0, 20.0, 30.0, 40.0))
    assert check_format(text) == ""
    assert QWEN25.check_answer(QWEN25.parse(text), 2, (56, 56)) == ""
    q2 = "<think>x</think><answer>Image-3 <|box_start|>(100,200),(300,400)<|box_end|></answer>"
    assert QWEN2.parse(q2) == Answer(3, (100.0, 200.0, 300.0, 400.0))
    # the fenced list Qwen2.5-VL often writes
    fenced = '<answer>```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "cat", "image": "Image-2"}]\n```</answer>'
    assert QWEN25.parse(fenced) == Answer(2, (1.0, 2.0, 3.0, 4.0))


@pytest.mark.parametrize(
    "text, reason",
    [
        ("no tags at all [1, 2, 3, 4]", "no <answer>"),
        ('<answer>{"image": 1, "bbox_2d": [1,2,3,4]}</answer><answer>{"image": 2, "bbox_2d": [1,2,3,4]}</answer>', "several <answer>"),
        ('<answer>[{"image": 1, "bbox_2d": [1,2,3,4]}, {"image": 1, "bbox_2d": [5,6,7,8]}]</answer>', "several boxes"),
        ("<answer></answer>", ""),
        ('<answer>{"image": 1.5, "bbox_2d": [1,2,3,4]}</answer>', "not an integer"),
        ('<answer>{"image": 1, "bbox_2d": [1,2,3]}</answer>', "4 numbers"),
        ("<answer>" + "9" * 40000 + "</answer>", "longer than"),
    ],
)  # fmt: skip
def test_no_answer_reasons(text, reason):
    r = QWEN25.parse(text)
    assert isinstance(r, NoAnswer)
    assert reason in r.reason


def test_check_answer_rejects_out_of_range():
    assert "out of range" in QWEN25.check_answer(Answer(4, (1, 1, 5, 5)), 3, (56, 56))
    assert "outside" in QWEN25.check_answer(Answer(1, (1, 1, 60, 5)), 3, (56, 56))
    assert "inverted" in QWEN2.check_answer(Answer(1, (10, 1, 5, 5)), 3)
    assert QWEN2.check_answer(Answer(None, (1, 1, 5, 5)), 3) == "no image index"
    assert QWEN2.check_answer(NoAnswer("x"), 3) == "x"


@pytest.mark.parametrize(
    "text",
    [
        "<answer>x</answer><think>y</think>",  # answer before think
        "<think>a</think><think>b</think><answer>x</answer>",
        "<think>a</think>chatter<answer>x</answer>",
        "<think>a</think><answer>x</answer> trailing",
        "<think>a</think>",
    ],
)
def test_check_format_rejects(text):
    assert check_format(text) != ""


def test_qwen2_several_images_named():
    r = QWEN2.parse("<answer>Image-1 or Image-2 <|box_start|>(1,2),(3,4)<|box_end|></answer>")
    assert isinstance(r, NoAnswer) and "several images" in r.reason


def test_lenient_free_text():
    assert QWEN2.parse("It's in the third image. (137,543),(999,705)", strict=False) == Answer(
        3, (137, 543, 999, 705)
    )
    assert QWEN25.parse("[59,268,187,443]", strict=False) == Answer(None, (59, 268, 187, 443))
    assert QWEN2.parse("It's in the third image. (137,543),(999,705)", strict=True).ok is False


def test_image_mentions():
    assert find_image_mentions("Image-2, image 3, the fourth image, the 5th image, 2th image") == [
        2,
        3,
        4,
        5,
        2,
    ]
    assert find_image_mentions("imagery of 3 dogs") == []


def test_coordinate_methods():
    assert QWEN2.from_normalized((0.1, 0.2, 0.3, 0.4)) == (100, 200, 300, 400)
    assert QWEN25.from_normalized((0.1, 0.2, 0.3, 0.4), (280, 140)) == (28, 28, 84, 56)
    assert QWEN25.to_normalized((28, 28, 84, 56), (280, 140)) == pytest.approx((0.1, 0.2, 0.3, 0.4))
    with pytest.raises(ValueError):
        QWEN25.to_normalized((1, 2, 3, 4))


# --- the official lenient parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, box",
    [
        ("(100,200),(300,400)", (0.1, 0.2, 0.3, 0.4)),
        ("[0.1, 0.2, 0.3, 0.4]", (0.1, 0.2, 0.3, 0.4)),
        ("(0.1,0.2),(0.3,0.4)", (0.1, 0.2, 0.3, 0.4)),
        ("(0.1, 0.2, 0.3, 0.4)", (0.1, 0.2, 0.3, 0.4)),
        ("[100, 200, 300, 400]", (0.1, 0.2, 0.3, 0.4)),
        ("<box>100 200 300 400</box>", (0.1, 0.2, 0.3, 0.4)),
        ("nothing here", (0.0, 0.0, 0.0, 0.0)),
        # pattern order: the int pair wins over a float list that comes first in the text
        ("[0.5, 0.5, 0.6, 0.6] then (100,200),(300,400)", (0.1, 0.2, 0.3, 0.4)),
        # one float match: values >= 1 are divided (1.0 becomes 0.001, the official quirk)
        ("[0.5, 0.2, 1.0, 0.9]", (0.5, 0.2, 0.001, 0.9)),
        # several float matches: only values > 1 are divided, the first box is used
        ("[0.5, 0.2, 1.0, 0.9] [0.1, 0.1, 0.2, 0.2]", (0.5, 0.2, 1.0, 0.9)),
        # several int-pair matches: a value of 1 is still divided (as the reference runs show)
        ("(1,941),(100,999)(1,941),(100,999)", (0.001, 0.941, 0.1, 0.999)),
    ],
)
def test_official_box(text, box):
    assert official_box(text) == pytest.approx(box)
