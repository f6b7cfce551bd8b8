"""The inference constants the evaluate stage's config defaults to, without importing torch.

`saliencylab.detection.model` builds its detectors with these; the evaluate stage reads them here
for its `--help`, which must not load torch.
"""

TORCHVISION_SCORE_THRESHOLD = 0.05  # box_score_thresh: detections below it are never output
TORCHVISION_DETECTIONS_PER_IMAGE = 100  # box_detections_per_img, also COCO's maxDets
