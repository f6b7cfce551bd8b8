"""The SALICON .mat and COCO instances readers behind hsi-labels, on files written at test time."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from scipy.io import savemat

from saliencylab.datasets.coco_instances import image_ids_by_file, instance_masks, load_instances
from saliencylab.datasets.salicon import read_fixations_mat

from tests.hsi_fixtures import DOG, HEIGHT, WIDTH, gaze_struct, write_salicon_coco


def _mat(content: dict) -> bytes:
    buffer = io.BytesIO()
    savemat(buffer, content)
    return buffer.getvalue()


def test_fixations_per_subject_as_stored():
    subjects = [np.array([[1, 2], [640, 480]]), np.zeros((0, 2)), np.array([[5.0, 6.0]])]
    parsed = read_fixations_mat(_mat({"gaze": gaze_struct(subjects), "resolution": np.array([[480, 640]])}), "a.mat")
    assert parsed.resolution == (480, 640) and len(parsed.subjects) == 3
    np.testing.assert_array_equal(parsed.xy, [[1, 2], [640, 480], [5, 6]])
    assert read_fixations_mat(_mat({"gaze": gaze_struct(subjects[:1])}), "b.mat").resolution is None


def test_unreadable_or_foreign_mat_files_are_named():
    with pytest.raises(ValueError, match="x.mat is not a readable .mat file"):
        read_fixations_mat(b"not a mat file", "x.mat")
    with pytest.raises(ValueError, match="y.mat has no SALICON `gaze`"):
        read_fixations_mat(_mat({"fixations": np.zeros((3, 2))}), "y.mat")
    bad = gaze_struct([np.zeros((4, 3))])
    with pytest.raises(ValueError, match=r"subject 0 has fixations of shape \(4, 3\)"):
        read_fixations_mat(_mat({"gaze": bad}), "z.mat")


@pytest.fixture(scope="module")
def coco_bytes(tmp_path_factory):
    _, coco = write_salicon_coco(tmp_path_factory.mktemp("coco"))
    return (coco / "annotations" / "instances_train2014.json").read_bytes()


def test_polygon_and_rle_masks_decoded_by_pycocotools(coco_bytes):
    coco = load_instances(coco_bytes, "instances.json")
    image_id = image_ids_by_file(coco)["COCO_train2014_000000000001.jpg"]
    masks = instance_masks(coco, image_id, include_crowd=False)
    assert [(m.annotation_id, m.category) for m in masks] == [(101, "dog"), (201, "cat")]
    dog = masks[0].mask
    assert dog.shape == (HEIGHT, WIDTH) and dog.dtype == np.uint8
    assert dog[DOG[1] + 5, DOG[0] + 5] == 1 and dog[0, 0] == 0 and dog[DOG[3] + 5, DOG[2] + 5] == 0


def test_crowd_and_bad_annotations(coco_bytes):
    document = json.loads(coco_bytes)
    document["annotations"][0]["iscrowd"] = 1
    coco = load_instances(json.dumps(document).encode(), "i.json")
    assert [m.category for m in instance_masks(coco, 1, include_crowd=False)] == ["cat"]
    assert [m.iscrowd for m in instance_masks(coco, 1, include_crowd=True)] == [True, False]
    document["annotations"][0]["segmentation"] = []
    coco = load_instances(json.dumps(document).encode(), "i.json")
    with pytest.raises(ValueError, match="annotation 101 of image COCO_train2014_000000000001.jpg has no segmentation"):
        instance_masks(coco, 1, include_crowd=True)
    with pytest.raises(ValueError, match="is not a COCO instances file"):
        load_instances(b'{"images": []}', "j.json")
    with pytest.raises(ValueError, match="k.json is not JSON"):
        load_instances(b"{", "k.json")
