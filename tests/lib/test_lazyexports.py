"""saliencylab.lazyexports: package names imported from their submodule on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from saliencylab.lazyexports import lazy_exports


def test_a_name_resolves_to_its_submodules_object_and_an_unknown_one_is_an_attribute_error():
    import saliencylab.cam
    import saliencylab.cam.detectors

    assert saliencylab.cam.build_detector is saliencylab.cam.detectors.build_detector
    getattr_ = lazy_exports("saliencylab.cam", {"build_detector": "detectors"})
    assert getattr_("build_detector") is saliencylab.cam.detectors.build_detector
    with pytest.raises(AttributeError, match="'saliencylab.cam' has no attribute 'nope'"):
        getattr_("nope")
    assert not hasattr(saliencylab.cam, "nope")


def test_the_light_packages_import_without_torch_until_a_model_name_is_read():
    probe = (
        "import sys\n"
        "import saliencylab.cam, saliencylab.detection, saliencylab.xai\n"
        "print('torch' in sys.modules)\n"
        "saliencylab.xai.normalise\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]
