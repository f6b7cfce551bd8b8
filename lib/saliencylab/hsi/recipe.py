"""The HSI paper's training recipe as constants, without importing torch.

`saliencylab.hsi.training` and `saliencylab.hsi.losses` use them; the hsi-train stage's config
defaults to them, and its `--help` must not load torch.
"""

PAPER_LR = 1e-4  # Adam learning rate (HSI paper)
PAPER_EPOCHS = 20  # (HSI paper)
PAPER_DECAY_EPOCH = 10  # the learning rate is divided by 10 after this many epochs (HSI paper)
PAPER_DECAY_FACTOR = 0.1
LOSS_WEIGHTS = (1.0, -1.0, -1.0)  # λ for (KL, CC, NSS): HSI paper
