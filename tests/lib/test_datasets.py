"""Raw dataset readers: sample ids from file names, VOC box clipping, mask index and aspect check."""

from __future__ import annotations

import math

import pytest

from saliencylab.datasets.masks import check_mask_aspect, index_masks
from saliencylab.datasets.names import clashing_names, printable, sample_id
from saliencylab.datasets.voc import Annotation, clip_annotation, parse_annotation
from saliencylab.shards import check_sample_key


@pytest.mark.parametrize(
    "name, expected",
    [("2007_000027", "2007_000027"), ("sub/street scene.v2", "sub_street_scene_v2"), ("caf\udce9", "caf_"), ("été", "_t_")],
)
def test_sample_ids_are_valid_keys(name, expected):
    assert sample_id(name) == expected and check_sample_key(sample_id(name))


def test_printable_names_and_clashes():
    assert printable("caf\udce9.png") == "caf\\xe9.png" and printable("été") == "été"
    clashes = clashing_names({"a_b": ["a_b.png", "a b.png"], "c": ["c.png"]})
    assert clashes == {"a_b": "files ['a b.png', 'a_b.png'] all map to the sample id 'a_b'; rename one of them"}


def test_mask_index_uses_the_same_ids():
    keys = ["human_attention_mask/cat/img 1.jpg", "human_attention_mask/dog/img 1.png", "cat/x.jpg", "human_attention_mask/a.jpg"]
    assert index_masks(keys) == {"img_1": [("cat", keys[0]), ("dog", keys[1])]}


def test_clip_annotation_golden():
    boxes = ((-2.0, 1.0, 5.0, 4.0), (11.0, 0.0, 12.0, 3.0), (1.0, 1.0, 1.0, 5.0), (math.nan, 0.0, 3.0, 3.0), (3.0, 2.0, 20.0, 30.0))
    annotation = Annotation(10, 8, boxes, tuple("abcde"), (False, True, False, False, True))
    clipped, n_clipped, n_dropped = clip_annotation(annotation)
    assert clipped.boxes == ((0.0, 1.0, 5.0, 4.0), (3.0, 2.0, 10.0, 8.0))
    assert clipped.labels == ("a", "e") and clipped.difficult == (False, True) and (n_clipped, n_dropped) == (2, 3)
    assert annotation.boxes == boxes  # not modified


def test_parse_annotation_keeps_boxes_as_written():
    xml = (
        b"<annotation><size><width>9</width><height>9</height></size><object><name>cat</name>"
        b"<bndbox><xmin>5</xmin><ymin>5</ymin><xmax>2</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    assert parse_annotation(xml, "a.xml").boxes == ((4.0, 4.0, 2.0, 9.0),)  # inverted: dropped later by clipping
    with pytest.raises(ValueError, match="a.xml is not a valid VOC annotation"):
        parse_annotation(xml.replace(b"<xmin>5</xmin>", b""), "a.xml")


def test_mask_aspect_tolerance():
    check_mask_aspect((100, 150), (200, 300), 0.0)
    check_mask_aspect((100, 151), (200, 300), 0.01)
    with pytest.raises(ValueError, match=r"mask is 100x160 .* image is 200x300: their aspect ratios differ by 6.7%"):
        check_mask_aspect((100, 160), (200, 300), 0.05)
