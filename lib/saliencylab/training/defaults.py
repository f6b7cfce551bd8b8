"""The fine-tuning constants that stage configs default to, without importing torch.

`saliencylab.training.model` builds one `Architecture` per name of ARCHITECTURE_NAMES, in this
order (a test checks that the two agree), with the sizes below; `saliencylab.training.recipe`
defaults to the paper's numbers and `saliencylab.training.loop` reports LOSS_NAMES. The finetune
and evaluate stages read them here for their config and `--help`, which must not load torch.
"""

ARCHITECTURE_NAMES: tuple[str, ...] = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_tiny")
PAPER_ARCHITECTURE = "fasterrcnn_resnet50_fpn"  # paper A's detector: Faster R-CNN, ResNet-50-FPN
TORCHVISION_MIN_SIZE, TORCHVISION_MAX_SIZE = 800, 1333  # GeneralizedRCNNTransform defaults
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")  # torchvision's Faster R-CNN

# The paper's recipe (research notes §1.5: the original notebook, torchvision's detection reference).
PAPER_EPOCHS = 5
PAPER_LR = 0.005
PAPER_MOMENTUM = 0.9
PAPER_WEIGHT_DECAY = 5e-4
PAPER_LR_STEP = 2  # StepLR step_size, in epochs
PAPER_LR_GAMMA = 0.1
PAPER_BATCH_SIZE = 4
REFERENCE_WARMUP_FACTOR = 0.001  # torchvision references/detection/engine.py
REFERENCE_WARMUP_ITERS = 1000
