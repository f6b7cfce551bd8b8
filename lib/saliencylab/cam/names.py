"""The names of the detectors the CAM engine knows, in registry order, without importing torch.

`saliencylab.cam.detectors` holds one `DetectorSpec` per name here, in this order (a test checks
that the two agree); the CLI reads this tuple for its choices and help, which must not load torch.
"""

DETECTOR_NAMES: tuple[str, ...] = ("faster_rcnn", "mask_rcnn", "retinanet", "ssd300", "ssdlite", "yolov5s", "detr")
