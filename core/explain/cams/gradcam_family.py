"""Grad-CAM, Grad-CAM++, EigenCAM and ScoreCAM through pytorch-grad-cam.

The library's objects register forward/backward hooks; `release()` (called on leaving the `with`
block) removes them. The target is the single COVID logit.
"""
from __future__ import annotations

import torch

from .base import CamMethod, _LogitModel, last_conv_layer


class _GradCamLibrary(CamMethod):
    library_name = None  # class in pytorch_grad_cam, imported on first use (it pulls in OpenCV and matplotlib)

    def __init__(self, classifier):
        import pytorch_grad_cam

        super().__init__(classifier)
        self._model = _LogitModel(self.classifier)
        library_class = getattr(pytorch_grad_cam, self.library_name)
        self._cam = library_class(model=self._model, target_layers=[last_conv_layer(self.classifier)])

    def release(self):
        if self._cam is not None:
            self._cam.activations_and_grads.release()
            self._cam = None

    def raw(self, images01):
        """The library's map, already at the input's size."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if self._cam is None:
            raise RuntimeError(f"{self.name}: hooks already released; use the method inside its `with` block")
        with torch.enable_grad():
            maps = self._cam(input_tensor=images01, targets=[ClassifierOutputTarget(0)] * len(images01))
        return torch.from_numpy(maps).float()


def _make(name_, cls_name):
    return type(cls_name, (_GradCamLibrary,), {"name": name_, "library_name": cls_name})


GradCam = _make("gradcam", "GradCAM")
GradCamPlusPlus = _make("gradcam++", "GradCAMPlusPlus")
EigenCam = _make("eigencam", "EigenCAM")
ScoreCam = _make("scorecam", "ScoreCAM")
