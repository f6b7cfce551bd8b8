"""HSI, the human saliency imitator: a CLIP RN50 model of where people look when they explain a label.

`model` holds the network (encoder features u4, u5, the dense text-aligned embedding z, the
label score map a and the decoder), `clip_weights` the offline weight handling, `labels` the pseudo
conditional saliency labels of Algorithm 1, `losses` the differentiable training loss. Shapes and
choices: docs/hsi.md.
"""
