"""One-off conversion of an official YOLOv5 checkpoint (a pickled model) to a safetensors state dict.

This is the package's only file I/O, kept apart because it must unpickle: the official
`yolov5s.pt` (GitHub releases v6.0-v7.0 of ultralytics/yolov5) stores the `DetectionModel`
object itself under "model"/"ema", not a state dict. Unpickling it imports the classes it was
saved with, so the yolov5 repository's `models.yolo`, `models.common` and `utils` packages must
be importable: clone ultralytics/yolov5 at the checkpoint's release tag and put the clone on
`sys.path` (or PYTHONPATH) for the conversion only. The result loads with
`saliencylab.weights.load_weights(path)` into `build_detector("yolov5s", state_dict)`, with no
pickle and no yolov5 code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saliencylab.cam.detectors import build_detector

DETECT_WEIGHT = "model.24.m.0.weight"  # (3 × (5 + classes), 128, 1, 1) in yolov5s


def convert_yolov5_checkpoint(path: str | Path, out_path: str | Path, *, allow_pickle: bool = False) -> int:
    """Convert `path` (official yolov5s .pt) to a float32 safetensors state dict at `out_path`.

    The state dict is checked by a strict load into our `yolov5s` before anything is written.

    Args:
        path: a YOLOv5 v6.0+ checkpoint, e.g. `yolov5s.pt` from the v6.1 release, that you trust.
        out_path: where the `.safetensors` file goes (overwritten).
        allow_pickle: must be True. Unpickling runs arbitrary code from the file, so it is never
            done implicitly; pass True only for a file from a source you trust (ideally with a
            checked hash), and needs the yolov5 repository importable (module docstring).

    Returns:
        The number of classes found in the Detect head (80 for the COCO release).

    Raises:
        ValueError: If `allow_pickle` is not True (nothing is read), the file holds no model
            object, or its state dict does not fit our yolov5s (keys and shapes listed).
        ModuleNotFoundError: If the yolov5 classes the pickle names cannot be imported.
    """
    if allow_pickle is not True:
        raise ValueError(
            f"refusing to unpickle {path}: official YOLOv5 checkpoints are pickled model objects, and "
            "unpickling executes code stored in the file. Call again with allow_pickle=True for a file you "
            "trust, with the ultralytics/yolov5 repository on sys.path; the safetensors output needs neither."
        )
    try:
        # not weights_only=True: the official checkpoint is a pickled model object, which that refuses;
        # this one-time conversion behind allow_pickle is the only place it is unpickled
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{path} needs the yolov5 repository's classes to unpickle ({error}); clone ultralytics/yolov5 at "
            "the checkpoint's release tag and add it to sys.path or PYTHONPATH"
        ) from error
    model = (checkpoint.get("ema") or checkpoint.get("model")) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{path} holds no YOLOv5 model object under 'ema' or 'model' (got {type(model).__name__})")
    state_dict = {name: tensor.detach().clone().contiguous() for name, tensor in model.float().state_dict().items()}
    if DETECT_WEIGHT not in state_dict:
        raise ValueError(f"{path} has no {DETECT_WEIGHT}: not a yolov5s v6.0+ layout (first keys: {list(state_dict)[:5]})")
    num_classes = state_dict[DETECT_WEIGHT].shape[0] // 3 - 5
    build_detector("yolov5s", state_dict, num_classes=num_classes)

    from safetensors.torch import save_file

    save_file(state_dict, str(out_path), metadata={"source": Path(path).name, "num_classes": str(num_classes)})
    return num_classes
