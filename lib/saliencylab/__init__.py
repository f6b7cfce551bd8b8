"""saliencylab: measure and improve how human-like the saliency maps of vision models are.

The science (metrics, CAM, DeepGaze, ...) lives in small pure modules; `storage`, `shards` and
`manifests` are the only modules that handle bytes. Stages in `jobs/` glue the two together.
"""

__version__ = "0.1.0"
