"""Fine-tuning Faster R-CNN on a training-set artifact (the `finetune` stage): recipe, data order, loop, checkpoints.

Modules, pure first:
    targets       meta.json -> boxes and VOC label ids 1..20 (NUM_CLASSES = 21), box cleaning and counts
    recipe        the paper's SGD recipe, the closed-form StepLR + warm-up schedule
    model         COCO-layout Faster R-CNN (R50-FPN or MobileNetV3-FPN) with a fresh 21-class predictor
    loop          one optimizer step with the finite-loss check
    stream        seeded shard order and shuffle buffer over an artifact's shards
    checkpoint    resumable checkpoints (safetensors + JSON) in an output storage
    distributed   torchrun / DistributedDataParallel helpers
    session       one epoch against storage (what a single process or each torchrun process runs)
Design and cost: docs/finetune.md.
"""
