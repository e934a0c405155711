"""CAM methods by name. `eq1` is the paper's Eq. 1 (a run's default attention source: core.config).

    with make_cam("gradcam", classifier) as cam:
        maps = cam(images01)      # (B, h, w) in [0, 1]
"""
from .base import CamMethod
from .classic import ClassCam, weighted_cam
from .eq1 import Eq1Cam
from .gradcam_family import EigenCam, GradCam, GradCamPlusPlus, ScoreCam

CAM_METHODS = {c.name: c for c in (Eq1Cam, ClassCam, GradCam, GradCamPlusPlus, EigenCam, ScoreCam)}


def make_cam(name: str, classifier) -> CamMethod:
    if name not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {', '.join(CAM_METHODS)}")
    return CAM_METHODS[name](classifier)


__all__ = ["CAM_METHODS", "CamMethod", "make_cam", "weighted_cam"]
