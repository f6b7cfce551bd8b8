"""One thin module per stage: parse arguments, call saliencylab, write outputs."""
