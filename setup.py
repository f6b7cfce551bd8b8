"""Installs the `lib/` folder under the import name `saliencylab`, next to `jobs`."""
from setuptools import find_packages, setup

setup(
    package_dir={"saliencylab": "lib", "jobs": "jobs"},
    packages=["saliencylab", *(f"saliencylab.{p}" for p in find_packages("lib")), "jobs"],
    package_data={"saliencylab": ["data/*", "data/**/*"]},
)
