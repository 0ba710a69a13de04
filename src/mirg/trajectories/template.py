"""Template mode: reasoning written from a Sample's object- and image-level annotations, offline.

The reasoning walks four steps and says only what the annotations support:

1. **question** — what is asked and which reference is given (a marked box, an image, a description, a chain);
2. **objects** — for each image, the annotated objects (size, colour, shape, coarse position);
3. **cross-image** — the image-level annotation (difference, common object, same object, crop, description,
   shared attribute, correspondence, spatial relation) that decides the target image, with checks computed
   from the object lists (how many images hold each object, which look-alikes differ in what);
4. **localisation** — the target, its position and its box in the dialect's coordinates.

Each step has several phrasings; which one is used is drawn from a random stream seeded by
``(seed, sample id, variant)`` (stable across Python runs), so one seed always gives the same text and the SFT
set is not one sentence repeated. The answer itself is rendered by :func:`mirg.prompting.target_completion`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mirg.answers import Dialect
from mirg.boxes import iou
from mirg.sample import ObjectAnn, Sample
from mirg.synth.relations import (
    ATTRIBUTE_WORDS,
    COMMON_OBJECT,
    CORRESPONDENCE,
    CROP_OF,
    DESCRIBED_BY,
    DIFFERENCE,
    PERTURBATION,
    SAME_ATTRIBUTE,
    SAME_OBJECT,
    SAME_SCENE,
    SPATIAL,
    SPATIAL_WORDS,
)
from mirg.trajectories.describe import (
    article,
    at_position,
    attribute,
    describe,
    get_object,
    has_annotations,
    position,
    signature,
    target_object,
)

MAX_LISTED = 8  # objects listed per image before "and N more"

# How much of the reasoning a trajectory keeps. The steps are lines (the objects step one line per image):
# ``full`` keeps them all, ``short`` the last two lines (the cross-image step and the localisation), ``brief``
# the last (the localisation). Every step is still written, so the phrasings drawn do not depend on the length.
# ``compact`` is not a cut: its own two short sentences for small models (about 30-45 tokens of the tiny base's
# tokenizer), the image-level decision (the relation that picks the target image, naming it) and then the object,
# always ending on the answer's image (:func:`compact_reasoning`).
REASONING_LENGTHS = ("full", "short", "brief", "compact")
_KEEP_LINES = {"short": 2, "brief": 1}


def stable_rng(seed: int, sample_id: str, variant: int) -> random.Random:
    """A random stream that depends only on (seed, sample id, variant) — not on Python's hash seed."""
    digest = hashlib.sha256(f"{seed}|{sample_id}|{variant}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class TemplateError(ValueError):
    """The sample cannot get a template trajectory (no target, no annotations); ``code`` is the stats key."""

    def __init__(self, code: str, why: str):
        super().__init__(why)
        self.code = code


def img(k: int) -> str:
    return f"Image-{k}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(items: Sequence[str], last: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


class _Writer:
    def __init__(
        self, sample: Sample, dialect: Dialect, resized_wh: tuple[int, int] | None, rng: random.Random
    ):
        self.s = sample
        self.d = dialect
        self.wh = resized_wh
        self.rng = rng
        self.t = sample.target_image
        self.types = [r.get("type") for r in sample.relations]
        self.target = target_object(sample)

    def pick(self, options: Sequence[str], **kw: Any) -> str:
        return self.rng.choice(list(options)).format(**kw)

    def rel(self, type_: str, image: int | None = None) -> dict[str, Any]:
        """The first relation of ``type_`` (with ``image``: whose subject lies in that image), or {}."""
        found = [r for r in self.s.relations if r.get("type") == type_]
        if image is not None:
            found = [r for r in found if (r.get("subject") or {}).get("image") == image]
        return found[0] if found else {}

    def obj(self, ref: Any) -> ObjectAnn | None:
        return get_object(self.s, ref)

    def narrator(self) -> Narrator:
        """The narrator of the deciding relation: the first of :data:`NARRATORS` the sample carries."""
        return next((n for type_, n in NARRATORS.items() if type_ in self.types), QUOTING)

    def where(self) -> str:
        """The target image, or a phrase saying the question does not name it."""
        if self.s.meta.get("target_named", True):
            return img(self.t)  # type: ignore[arg-type]
        return "an image the question does not name"

    # -- step 1: the question (:attr:`Narrator.question`) ---------------------------------------------------
    def _difference_question(self) -> str:
        t = self.t
        if PERTURBATION in self.types:
            return self.pick(
                [
                    "The question asks for the real difference between the two images, located in {w}; a small "
                    "shift, noise and colour drift between them do not count.",
                    "I am asked to find what really changed between {a} and {b} and to box it in {w}, ignoring "
                    "the shift and noise between the two pictures.",
                ],
                w=img(t),  # type: ignore[arg-type]
                a=img(1),
                b=img(2),
            )
        return self.pick(
            [
                "The question asks for the one difference between {a} and {b}, to be located in {w}.",
                "I need to compare the two images, find the single thing that differs, and give its box in {w}.",
                "The task: spot the difference between the two images and locate it in {w}.",
            ],
            a=img(1),
            b=img(2),
            w=img(t),  # type: ignore[arg-type]
        )

    def _common_question(self) -> str:
        return self.pick(
            [
                "The question says the {n} images share exactly one object and asks me to locate it in {w}.",
                "I need the object that every one of the {n} images contains, boxed in {w}.",
                "The task is to find the object common to all {n} images and give its box in {w}.",
            ],
            n=self.s.num_images,
            w=self.where(),
        )

    def _crop_question(self) -> str:
        k = self._region_image()
        return self.pick(
            [
                "{src} is the source image and the other images are zoomed-in regions of it; I must find "
                "where the region shown in {k} lies inside {src}.",
                "The question gives a source image ({src}) and crops of it, and asks for the window of {src} "
                "that {k} shows.",
            ],
            src=img(1),
            k=img(k),
        )

    def _described_question(self) -> str:
        desc = self.s.meta.get("description") or self._described_phrase()
        return self.pick(
            [
                "The reference is only a text description, '{desc}', and the question does not say which "
                "image holds it, so every image has to be checked.",
                "I am given a description, '{desc}', with no image named; I have to search all {n} images "
                "for the one object it fits.",
            ],
            desc=desc,
            n=self.s.num_images,
        )

    def _correspondence_question(self) -> str:
        r = self.rel(CORRESPONDENCE)
        word = ATTRIBUTE_WORDS.get(r.get("attribute", "shape"), "shape")
        return self.pick(
            [
                "The reference is the object inside the red box in {a}; I need the object in {b} that "
                "corresponds to it, the one of the same {word} whatever its colour.",
                "A red box marks an object in {a}. The question asks for its counterpart in {b}: the same "
                "kind of {word}, possibly another colour.",
            ],
            a=img(1),
            b=img(2),
            word=word,
        )

    def _same_attribute_question(self) -> str:
        r = self.rel(SAME_ATTRIBUTE)
        word = ATTRIBUTE_WORDS.get(r.get("attribute", ""), "attribute")
        ref_img = (r.get("object") or {}).get("image", 1)
        return self.pick(
            [
                "The reference is the object in {r}; the question asks which object in {w} has the same "
                "{word} as it.",
                "I have to look at the object in {r} first, then find the object in {w} that shares its "
                "{word}.",
            ],
            r=img(ref_img),
            w=self.where(),
            word=word,
        )

    def _same_object_question(self) -> str:
        r = self.rel(SAME_OBJECT)
        if self.s.ref_boxes:
            rb = self.s.ref_boxes[0]
            moving = len(r.get("occurrences") or []) > 2
            extra = " The images are frames of moving objects." if moving else ""
            return self.pick(
                [
                    "The question gives a reference: the object marked by a box in {r}. I have to find the "
                    "same object in {w}.{x}",
                    "The reference is a box in {r}; the task is to locate that very object in {w}.{x}",
                ],
                r=img(rb.image),
                w=self.where(),
                x=extra,
            )
        ref_img = (r.get("object") or {}).get("image", 1)
        return self.pick(
            [
                "The reference is the object shown in {r}; the question asks where that same object "
                "appears among the other images.",
                "{r} shows the object to look for; I need to find it again in one of the other images.",
            ],
            r=img(ref_img),
        )

    def _plain_question(self) -> str:
        q = " ".join(self.s.question.replace("<|box_start|>", "").replace("<|box_end|>", "").split())
        return self.pick(
            ['The question asks: "{q}"', 'I am asked: "{q}"'],
            q=q,
        )

    def _described_phrase(self) -> str:
        r = self.rel(DESCRIBED_BY)
        o = self.obj(r.get("subject"))
        attrs = r.get("attributes") or ["size", "color", "shape"]
        return "the " + describe(o, attrs=attrs) if o is not None else "the described object"

    def _chain_question(self) -> str:
        sp = self.rel(SPATIAL)
        sa = self.rel(SAME_ATTRIBUTE)
        a = (sp.get("object") or {}).get("image")
        anchor = self.obj(sp.get("object"))
        word = ATTRIBUTE_WORDS.get(sa.get("attribute", ""), "attribute")
        rel = SPATIAL_WORDS.get(sp.get("relation", ""), sp.get("relation", "next to"))
        anchor_txt = describe(anchor, with_size=False) if anchor is not None else "the anchor object"
        if self.s.meta.get("target_named", True):
            return self.pick(
                [
                    "The reference is a chain across images: first the object {rel} the {anc} in {a}, then, in "
                    "{w}, the object with the same {word} as that one.",
                    "This needs two hops: in {a}, find what lies {rel} the {anc}; then look in {w} for the object "
                    "sharing its {word}.",
                ],
                rel=rel,
                anc=anchor_txt,
                a=img(a),
                w=img(self.t),  # type: ignore[arg-type]
                word=word,
            )
        filt = " ".join(str(v) for v in (self.s.meta.get("filter") or {}).values())
        thing = f"the {filt} object" if filt else "the object"
        return self.pick(
            [
                "The reference is a chain across images: first the object {rel} the {anc} in {a}; then {th}, "
                "in some image other than {a}, with the same {word} as that one. The target image is not named.",
                "This needs two hops: in {a}, find what lies {rel} the {anc}; then search the images other "
                "than {a} for {th} sharing its {word}.",
            ],
            rel=rel,
            anc=anchor_txt,
            a=img(a),
            th=thing,
            word=word,
        )

    def _region_image(self) -> int:
        k = self.s.meta.get("region_image")
        if isinstance(k, int):
            return k
        crops = [r for r in self.s.relations if r.get("type") == CROP_OF and isinstance(r.get("box"), list)]
        if crops and self.s.target_box is not None:
            best = max(crops, key=lambda r: iou(r["box"], self.s.target_box))  # type: ignore[arg-type]
            return int(best["images"][0])
        return 2

    # -- step 2: objects per image ------------------------------------------------------------------------
    def objects_step(self) -> str:
        lines = []
        lead = self.pick(
            [
                "Looking at each image in turn:",
                "First, what each image contains:",
                "Going through the images one by one:",
            ]
        )
        for k, per in enumerate(self.s.objects, start=1):
            if not per:
                lines.append(self.pick(["{k} shows no object of note.", "{k}: nothing of note."], k=img(k)))
                continue
            items = []
            for o in per[:MAX_LISTED]:
                cut = " (cut off at the edge)" if o.attributes.get("truncated") else ""
                items.append(f"{article(describe(o))} {at_position(o.box)}{cut}")
            if len(per) > MAX_LISTED:
                items.append(f"{len(per) - MAX_LISTED} more")
            lines.append(
                self.pick(
                    ["{k} shows {x}.", "In {k} I see {x}.", "{k} contains {x}.", "{k} has {x}."],
                    k=img(k),
                    x=_join(items),
                )
            )
        return lead + "\n" + "\n".join(lines)

    # -- step 3: the cross-image decision (:attr:`Narrator.cross`) ----------------------------------------
    def _quoted(self) -> str:
        """Relation types without a narrator: their ``text`` quoted."""
        texts = [r["text"] for r in self.s.relations if r.get("text")]
        t = img(self.t)  # type: ignore[arg-type]
        if texts:
            return self.pick(
                [
                    "Across the images: {x} This points to {t}.",
                    "Relating the images: {x} So the answer is in {t}.",
                ],
                x=" ".join(texts),
                t=t,
            )
        return self.pick(["Weighing the images against the question, the object is in {t}."], t=t)

    def _difference(self) -> str:
        r = self.rel(DIFFERENCE)
        change = r.get("change")
        subj = self.obj(r.get("subject"))
        other = self.obj(r.get("object"))
        si = (r.get("subject") or {}).get("image", self.t)
        oi = 3 - si if si in (1, 2) else 1
        pert = self.rel(PERTURBATION)
        pre = ""
        if isinstance(pert.get("shift_px"), list):
            dx, dy = pert["shift_px"]
            pre = self.pick(
                [
                    "{b} is {a} moved by ({dx}, {dy}) pixels with extra noise and a slight colour change, so I "
                    "match objects after undoing that shift. ",
                    "Allowing for the ({dx}, {dy}) pixel shift and the noise in {b}, I pair up the objects. ",
                ],
                a=img(1),
                b=img(2),
                dx=dx,
                dy=dy,
            )
        elif SAME_SCENE in self.types:
            pre = self.pick(
                [
                    "The two images show the same scene, so I pair up their objects one by one. ",
                    "Both images show one scene; matching object against object: ",
                ]
            )
        if subj is None:
            return pre + f"The change is in {img(si)}."
        pos = position(subj.box)
        if change in ("added", "removed"):
            body = self.pick(
                [
                    "every object has a partner except the {o} {at} of {s}, which {x} lacks, so that is the "
                    "difference.",
                    "only the {o} {at} of {s} has no counterpart in {x}; it is the difference.",
                ],
                o=describe(subj),
                at=at_position(subj.box),
                s=img(si),
                x=img(oi),
            )
        elif change == "color" and other is not None:
            o1, o2 = (other, subj) if oi == 1 else (subj, other)
            body = self.pick(
                [
                    "at the {p} the {sh} is {c1} in {a} but {c2} in {b}; everything else matches, so the "
                    "colour change is the difference.",
                    "the {sh} at the {p} changes colour, {c1} in {a} and {c2} in {b}, while all other objects "
                    "match.",
                ],
                p=pos,
                sh=subj.category,
                c1=o1.attributes.get("color"),
                c2=o2.attributes.get("color"),
                a=img(1),
                b=img(2),
            )
        elif change == "shape" and other is not None:
            o1, o2 = (other, subj) if oi == 1 else (subj, other)
            body = self.pick(
                [
                    "at the {p}, {a} has {x} where {b} has {y}; all other objects match, so that is the change.",
                    "the object at the {p} changes shape: {x} in {a}, {y} in {b}.",
                ],
                p=pos,
                x=article(describe(o1, with_size=False)),
                y=article(describe(o2, with_size=False)),
                a=img(1),
                b=img(2),
            )
        elif change == "size" and other is not None:
            o1, o2 = (other, subj) if oi == 1 else (subj, other)
            body = self.pick(
                [
                    "the {o} at the {p} is {s1} in {a} but {s2} in {b}; the rest is identical.",
                    "everything matches except the size of the {o} at the {p}: {s1} in {a}, {s2} in {b}.",
                ],
                o=describe(subj, with_size=False),
                p=pos,
                s1=o1.attributes.get("size"),
                s2=o2.attributes.get("size"),
                a=img(1),
                b=img(2),
            )
        else:
            body = f"the {describe(subj)} {at_position(subj.box)} of {img(si)} is what differs."
        if not pre or pre.endswith(". "):
            body = body[:1].upper() + body[1:]
        return pre + body

    def _common(self) -> str:
        r = self.rel(COMMON_OBJECT)
        subj = self.obj(r.get("subject"))
        n = self.s.num_images
        if subj is None:
            return f"One object appears in all {n} images; in {img(self.t)} it is the answer."  # type: ignore[arg-type]
        sig = signature(subj)
        places = []
        for occ in r.get("occurrences") or []:
            o = self.obj(occ)
            if o is not None:
                places.append(f"{position(o.box)} of {img(occ['image'])}")
        others = []
        seen = {sig}
        for o in self.s.objects[self.t - 1]:  # type: ignore[operator]
            if signature(o) in seen:
                continue
            seen.add(signature(o))
            count = sum(any(signature(p) == signature(o) for p in per) for per in self.s.objects)
            others.append(f"the {describe(o)} is in {count} of {n}")
        check = ""
        if others:
            check = self.pick(
                [" The other objects of {t} are not everywhere: {x}.", " By contrast, {x}."],
                t=img(self.t),  # type: ignore[arg-type]
                x="; ".join(others[:3]),
            )
        return (
            self.pick(
                [
                    "Counting where each object occurs, only the {o} is in all {n} images ({p}).",
                    "The {o} is the one object present in every image: {p}.",
                    "Checking each object against the other images, the {o} appears in all {n} of them ({p}).",
                ],
                o=describe(subj),
                n=n,
                p=_join(places) if places else "in each",
            )
            + check
        )

    def _crop(self) -> str:
        k = self._region_image()
        crop = next(
            (r for r in self.s.relations if r.get("type") == CROP_OF and (r.get("images") or [None])[0] == k),
            None,
        )
        inside = self.s.objects[k - 1] if k - 1 < len(self.s.objects) else []
        whole = [o for o in inside if not o.attributes.get("truncated")]
        names = [describe(o) for o in (whole or inside)]
        src = []
        for o in whole or inside:
            for p in self.s.objects[0] if self.s.objects else []:
                if signature(p) == signature(o) and p.attributes.get("instance") == o.attributes.get(
                    "instance"
                ):
                    src.append(f"the {describe(p)} {at_position(p.box)}")
                    break
        box = crop.get("box") if crop else self.s.target_box
        where = position(box) if box else "matching part"  # type: ignore[arg-type]
        seen = _join([article(x) for x in names]) if names else "only background"
        verb = "this is" if len(src) == 1 else "these are"
        located = f" In {img(1)} {verb} {_join(src)}." if src else ""
        return self.pick(
            [
                "{k} is a zoomed-in view holding {seen}.{loc} So {k} shows the {w} part of {s}.",
                "The crop {k} contains {seen}.{loc} The window of {s} that holds them is in its {w} part.",
            ],
            k=img(k),
            seen=seen,
            loc=located,
            w=where,
            s=img(1),
        )

    def _described(self) -> str:
        r = self.rel(DESCRIBED_BY)
        subj = self.obj(r.get("subject"))
        attrs = [a for a in (r.get("attributes") or []) if a in ("size", "color", "shape")] or ["shape"]
        t = img(self.t)  # type: ignore[arg-type]
        if subj is None:
            return f"Only {t} holds the described object."
        phrase = "the " + describe(subj, attrs=attrs)
        near = []
        for k, per in enumerate(self.s.objects, start=1):
            for o in per:
                if o is subj:
                    continue
                differ = [a for a in attrs if attribute(o, a) != attribute(subj, a)]
                if len(differ) == 1 and len(attrs) > 1:
                    near.append(f"the {describe(o)} in {img(k)} differs in {ATTRIBUTE_WORDS[differ[0]]}")
        check = (" Look-alikes do not fit: " + "; ".join(near[:2]) + ".") if near else ""
        return self.pick(
            [
                "Checking every image for {p}: only {t} has one, the {o} {at}.{c}",
                "Of all the objects in the {n} images, just one is {p2}: the {o} in {t}.{c}",
            ],
            p=phrase,
            p2=article(phrase[4:]),
            t=t,
            o=describe(subj),
            at=at_position(subj.box),
            n=self.s.num_images,
            c=check,
        )

    def _same_attribute(self, r: dict[str, Any] | None = None, lead: str = "") -> str:
        """The cross-image step of ``r`` (default: the first same_attribute relation), after ``lead``."""
        r = r or self.rel(SAME_ATTRIBUTE)
        subj, ref = self.obj(r.get("subject")), self.obj(r.get("object"))
        attr = r.get("attribute", "")
        word = ATTRIBUTE_WORDS.get(attr, attr)
        value = r.get("value")
        ti = (r.get("subject") or {}).get("image", self.t)
        ri = (r.get("object") or {}).get("image", 1)
        if subj is None or ref is None:
            return (
                lead + f"The object in {img(ti)} shares the {word} {value} with the reference in {img(ri)}."
            )
        per = self.s.objects[ti - 1]
        same = [o for o in per if attribute(o, attr) == value]
        only = "the only" if len(same) == 1 else "the"
        filt = self.s.meta.get("filter") or {}
        if filt and not self.s.meta.get("target_named", True):
            f_val = next(iter(filt.values()))
            others = [k for k in range(1, self.s.num_images + 1) if k not in (ri,)]
            return lead + self.pick(
                [
                    "The {r} in {ri} has the {word} {v}. Searching {imgs} for {fa} object with that {word}, I "
                    "find it only in {t}: the {o}.",
                    "Its {word} is {v}. Among {imgs}, the one {fv} object whose {word} is {v} is the {o} in {t}.",
                ],
                r=describe(ref, with_size=False),
                ri=img(ri),
                v=value,
                word=word,
                imgs=_join([img(k) for k in others]),
                fv=f_val,
                fa=article(str(f_val)),
                o=describe(subj),
                t=img(ti),
            )
        return lead + self.pick(
            [
                "The {r} in {ri} has the {word} {v}. In {t}, {only} object with {word} {v} is the {o} {at}.",
                "The reference in {ri} is {ra}, so its {word} is {v}; scanning {t}, {only} object whose {word} "
                "is {v} is the {o}.",
                "{ri} holds a {r} ({word}: {v}). In {t} the object that shares this {word} is the {o} {at}.",
            ],
            r=describe(ref, with_size=False),
            ra=article(describe(ref, with_size=False)),
            ri=img(ri),
            word=word,
            v=value,
            t=img(ti),
            only=only,
            o=describe(subj),
            at=at_position(subj.box),
        )

    def _chain(self) -> str:
        sp = self.rel(SPATIAL)
        b, a = self.obj(sp.get("subject")), self.obj(sp.get("object"))
        ai = (sp.get("object") or {}).get("image", 1)
        rel = SPATIAL_WORDS.get(sp.get("relation", ""), sp.get("relation", "next to"))
        first = ""
        if a is not None and b is not None:
            first = self.pick(
                [
                    "In {i}, the {a} is {at}; the object {rel} it is the {b}. ",
                    "In {i}, {rel} the {a} there is the {b}. ",
                ],
                i=img(ai),
                a=describe(a, with_size=False),
                at=at_position(a.box),
                rel=rel,
                b=describe(b),
            )
        sa = self.rel(SAME_ATTRIBUTE, image=self.t)
        if not sa:
            return first + f"That leads to {img(self.t)}."  # type: ignore[arg-type]
        return self._same_attribute(sa, lead=first)

    def _correspondence(self) -> str:
        r = self.rel(CORRESPONDENCE)
        subj, ref = self.obj(r.get("subject")), self.obj(r.get("object"))
        attr = r.get("attribute", "shape")
        t = img((r.get("subject") or {}).get("image", self.t))
        if subj is None or ref is None:
            return f"The corresponding object is in {t}."
        same_color = [
            o
            for o in self.s.objects[self.t - 1]
            if o is not subj and attribute(o, "color") == attribute(ref, "color")  # type: ignore[operator]
        ]
        trap = ""
        if same_color:
            trap = self.pick(
                [
                    " The {x} shares only the colour, not the {w}.",
                    " (The {x} has the colour but not the {w}.)",
                ],
                x=describe(same_color[0]),
                w=ATTRIBUTE_WORDS.get(attr, attr),
            )
        return (
            self.pick(
                [
                    "The red box in {a} surrounds the {r}. In {t} the object with the same {w} ({v}) is the "
                    "{o} {at}.",
                    "Inside the red box of {a} is {ra}, so I look for {va} in {t}: the {o} {at}.",
                ],
                a=img(1),
                r=describe(ref, with_size=False),
                ra=article(describe(ref, with_size=False)),
                t=t,
                w=ATTRIBUTE_WORDS.get(attr, attr),
                v=r.get("value", attribute(ref, attr)),
                va=article(str(r.get("value", attribute(ref, attr)))),
                o=describe(subj),
                at=at_position(subj.box),
            )
            + trap
        )

    def _same_object(self) -> str:
        r = self.rel(SAME_OBJECT)
        subj, ref = self.obj(r.get("subject")), self.obj(r.get("object"))
        ri = (r.get("object") or {}).get("image", 1)
        t = img(self.t)  # type: ignore[arg-type]
        if subj is None or ref is None:
            return f"The same object appears in {t}."
        views = [
            x for x in self.s.relations if x.get("type") == SAME_SCENE and isinstance(x.get("view"), dict)
        ]
        pre = ""
        if views:
            mirrored = [img(x["images"][1]) for x in views if x["view"].get("mirror")]
            pre = (
                "The other images show the scene of {} from other viewpoints (zoomed and panned{}). ".format(
                    img(1), f"; {_join(mirrored)} mirrored" if mirrored else ""
                )
            )
        if self.s.ref_boxes:
            head = self.pick(
                ["The box in {r} covers the {o} {at}. ", "The marked box in {r} holds the {o} {at}. "],
                r=img(ri),
                o=describe(ref),
                at=at_position(ref.box),
            )
        else:
            head = self.pick(
                ["{r} shows the {o}. ", "The object in {r} is the {o}. "],
                r=img(ri),
                o=describe(ref),
            )
        occ = [x for x in r.get("occurrences") or [] if self.obj(x) is not None]
        if len(occ) > 2:
            track = [f"{img(x['image'])} {position(self.obj(x).box)}" for x in occ]  # type: ignore[union-attr]
            body = self.pick(
                [
                    "Following it from frame to frame ({tr}), in {t} it is the {o} {at}.",
                    "Tracking it through the frames: {tr}. In {t} it is {at}.",
                ],
                tr=", ".join(track),
                t=t,
                o=describe(subj),
                at=at_position(subj.box),
            )
        else:
            sig = signature(ref)
            matches = [
                k
                for k, per in enumerate(self.s.objects, start=1)
                if k != ri and any(signature(o) == sig for o in per)
            ]
            only = "only " if matches == [self.t] else ""
            near = []
            for k, per in enumerate(self.s.objects, start=1):
                if k == ri:
                    continue
                for o in per:
                    if o is subj:
                        continue
                    if o.category == ref.category or o.attributes.get("color") == ref.attributes.get("color"):
                        same = "shape" if o.category == ref.category else "colour"
                        if signature(o) != sig:
                            near.append(f"the {describe(o)} in {img(k)} shares only the {same}")
            check = (" " + _cap("; ".join(near[:2])) + ".") if near else ""
            body = self.pick(
                [
                    "Looking for an object with the same shape, colour and size, {only}{t} has it: the {o} {at}.{c}",
                    "The same {o} appears {only}in {t}, {at}.{c}",
                ],
                only=only,
                t=t,
                o=describe(subj),
                at=at_position(subj.box),
                c=check,
            )
        return pre + head + body

    # -- step 4: localisation -----------------------------------------------------------------------------
    def locate_step(self, native_box: Sequence[int]) -> str:
        t = img(self.t)  # type: ignore[arg-type]
        box = "[" + ", ".join(str(int(v)) for v in native_box) + "]"
        if self.d.coords == "pixels" and self.wh is not None:
            frame = f"pixels of {t} as the model sees it ({self.wh[0]}x{self.wh[1]})"
        else:
            frame = "0-1000 coordinates"
        if self.target is None:
            return self.pick(
                [
                    "So the answer is the region {at} of {t}, with box {b} in {f}.",
                    "The answer is therefore in {t}: the region {at}, box {b} ({f}).",
                ],
                at=at_position(self.s.target_box),  # type: ignore[arg-type]
                t=t,
                b=box,
                f=frame,
            )
        o = self.target[1]
        return self.pick(
            [
                "So the answer is in {t}: the {o} {at}, whose box is {b} in {f}.",
                "Therefore the target is the {o} in {t}, {at}; its box in {f} is {b}.",
                "The target is the {o} {at} of {t}; in {f} that box is {b}.",
            ],
            t=t,
            o=describe(o),
            at=at_position(o.box),
            b=box,
            f=frame,
        )


def template_reasoning(
    sample: Sample,
    dialect: Dialect,
    resized_wh: tuple[int, int] | None,
    seed: int = 0,
    variant: int = 0,
    reasoning: str = "full",
) -> str:
    """The four-step reasoning for ``sample`` (plain text, no tags). Deterministic in (seed, id, variant).

    ``resized_wh`` is the processor-resized (width, height) of the target image (Qwen2.5-VL pixel boxes).
    ``reasoning`` (one of :data:`REASONING_LENGTHS`) keeps all the steps, or only the last lines of them.
    Raises :class:`TemplateError` when the sample has no target or no annotations to reason from.
    """
    if reasoning not in REASONING_LENGTHS:
        raise ValueError(f"reasoning must be one of {', '.join(REASONING_LENGTHS)}, got {reasoning!r}")
    if sample.target_image is None or sample.target_box is None:
        raise TemplateError("no_target", f"sample {sample.id!r} has no target image/box")
    if not has_annotations(sample):
        raise TemplateError("no_annotations", f"sample {sample.id!r} has no object or image annotations")
    w = _Writer(sample, dialect, resized_wh, stable_rng(seed, sample.id, variant))
    if reasoning == "compact":
        return compact_reasoning(w)
    native = dialect.from_normalized(sample.target_box, resized_wh)
    narrator = w.narrator()
    steps = [narrator.question(w)]
    if any(sample.objects):
        steps.append(w.objects_step())
    steps.append(narrator.cross(w))
    steps.append(w.locate_step(native))
    text = "\n".join(s.strip() for s in steps if s.strip())
    if reasoning == "full":
        return text
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return "\n".join(lines[-_KEEP_LINES[reasoning] :])


# ------------------------------------------------------------------------------------------ compact reasoning
# Two sentences of their own (not a cut of the steps above): the image-level decision, i.e. the deciding relation
# in a few words ending on the target image, then the target object and its coarse position in that image. No box
# numbers (the answer carries them). Every phrase that names an image other than the target comes before the
# final "-> Image-t", so the last image the reasoning names is always the answer's.


def _compact_difference(w: _Writer) -> str:
    r = w.rel(DIFFERENCE)
    subj = w.obj(r.get("subject"))
    change = r.get("change")
    if subj is None:
        return "The images differ in one object"
    what = {"added": "is only in one image", "removed": "is only in one image", "color": "changes colour",
            "shape": "changes shape", "size": "changes size"}.get(change, "differs")  # fmt: skip
    return w.pick(["The {p} object {x}", "Only the {p} object {x}"], p=position(subj.box), x=what)


def _compact_common(w: _Writer) -> str:
    subj = w.obj(w.rel(COMMON_OBJECT).get("subject"))
    if subj is None:
        return f"One object is in all {w.s.num_images} images"
    return w.pick(["Only the {o} is in all {n} images", "The {o} is in every image"],
                  o=describe(subj), n=w.s.num_images)  # fmt: skip


def _compact_crop(w: _Writer) -> str:
    k = w._region_image()
    return w.pick(["{k} zooms into one part of {s}", "{k} is a crop of {s}"], k=img(k), s=img(1))


def _compact_described(w: _Writer) -> str:
    r = w.rel(DESCRIBED_BY)
    subj = w.obj(r.get("subject"))
    attrs = [a for a in (r.get("attributes") or []) if a in ("size", "color", "shape")] or ["shape"]
    if subj is None:
        return "One image holds the described object"
    return w.pick(
        ["Only one image has {a}", "Just one image holds {a}"], a=article(describe(subj, attrs=attrs))
    )


def _compact_same_attribute(w: _Writer) -> str:
    r = w.rel(SAME_ATTRIBUTE)
    word = ATTRIBUTE_WORDS.get(r.get("attribute", ""), "attribute")
    ri = (r.get("object") or {}).get("image", 1)
    return w.pick(["Same {w} ({v}) as in {r}", "The {w} {v} of {r}"], w=word, v=r.get("value"), r=img(ri))


def _compact_chain(w: _Writer) -> str:
    sp = w.rel(SPATIAL)
    b, a = w.obj(sp.get("subject")), w.obj(sp.get("object"))
    ai = (sp.get("object") or {}).get("image", 1)
    rel = SPATIAL_WORDS.get(sp.get("relation", ""), sp.get("relation", "next to"))
    first = f"Start in {img(ai)}"
    if a is not None and b is not None:
        first = f"{img(ai)}: the {describe(b, with_size=False)} {rel} the {describe(a, with_size=False)}"
    sa = w.rel(SAME_ATTRIBUTE, image=w.t)
    if not sa:
        return first
    word = ATTRIBUTE_WORDS.get(sa.get("attribute", ""), "attribute")
    return f"{first}; same {word} ({sa.get('value')})"


def _compact_correspondence(w: _Writer) -> str:
    r = w.rel(CORRESPONDENCE)
    ref = w.obj(r.get("object"))
    word = ATTRIBUTE_WORDS.get(r.get("attribute", "shape"), "shape")
    if ref is None:
        return f"Same {word} as the boxed object in {img(1)}"
    return w.pick(["Same {w} as the boxed {r} in {a}", "The boxed {r} in {a}: same {w}"],
                  w=word, r=describe(ref, with_size=False), a=img(1))  # fmt: skip


def _compact_same_object(w: _Writer) -> str:
    r = w.rel(SAME_OBJECT)
    ref = w.obj(r.get("object"))
    ri = (r.get("object") or {}).get("image", 1)
    if ref is None:
        return f"The object of {img(ri)} appears again"
    return w.pick(["The {o} of {r} appears again", "The {o} from {r} reappears"], o=describe(ref), r=img(ri))


def _compact_quoted(w: _Writer) -> str:
    return "The relations between the images decide"


@dataclass(frozen=True)
class Narrator:
    """How the template speaks about one deciding relation type: the question step (what is asked, which
    reference is given), the cross-image step (why the target is in that image) and the ``compact`` reasoning's
    decision (the relation in a few words)."""

    question: Callable[[_Writer], str]
    cross: Callable[[_Writer], str]
    compact: Callable[[_Writer], str]


# Relation type -> its narrator. A sample is narrated by the first type of this order it carries (a spatial
# chain also carries same_attribute, a perturbed difference also carries perturbation, ...).
NARRATORS: dict[str, Narrator] = {
    DIFFERENCE: Narrator(_Writer._difference_question, _Writer._difference, _compact_difference),
    COMMON_OBJECT: Narrator(_Writer._common_question, _Writer._common, _compact_common),
    CROP_OF: Narrator(_Writer._crop_question, _Writer._crop, _compact_crop),
    DESCRIBED_BY: Narrator(_Writer._described_question, _Writer._described, _compact_described),
    SPATIAL: Narrator(_Writer._chain_question, _Writer._chain, _compact_chain),
    CORRESPONDENCE: Narrator(
        _Writer._correspondence_question, _Writer._correspondence, _compact_correspondence
    ),
    SAME_ATTRIBUTE: Narrator(
        _Writer._same_attribute_question, _Writer._same_attribute, _compact_same_attribute
    ),
    SAME_OBJECT: Narrator(_Writer._same_object_question, _Writer._same_object, _compact_same_object),
}
# No known relation type: the question quoted, the relations' own texts quoted.
QUOTING = Narrator(_Writer._plain_question, _Writer._quoted, _compact_quoted)


def compact_reasoning(w: _Writer) -> str:
    """The ``compact`` reasoning: '<decision> -> Image-t.' then 'Target: the <object> <position>.' (two lines)."""
    t = img(w.t)  # type: ignore[arg-type]
    first = f"{_cap(w.narrator().compact(w))} -> {t}."
    if w.target is None:
        second = w.pick(["Target: the region {at} of {t}.", "In {t}: the region {at}."],
                        at=at_position(w.s.target_box), t=t)  # type: ignore[arg-type]  # fmt: skip
    else:
        o = w.target[1]
        second = w.pick(
            ["Target: the {o} {at}.", "In {t}: the {o} {at}."], o=describe(o), at=at_position(o.box), t=t
        )
    return first + "\n" + second
