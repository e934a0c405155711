"""CAM methods by name. `eq1` (the paper's Eq. 1) is the default attention source.

    with make_cam("gradcam", classifier) as cam:
        maps = cam(images01)      # (B, h, w) in [0, 1]
"""
from .base import CamMethod
from .classic import ClassCam, weighted_cam
from .eq1 import Eq1Cam
from .gradcam_family import EigenCam, GradCam, GradCamPlusPlus, ScoreCam

CAM_METHODS = {c.name: c for c in (Eq1Cam, ClassCam, GradCam, GradCamPlusPlus, EigenCam, ScoreCam)}
DEFAULT_CAM = "eq1"


def make_cam(name: str, classifier) -> CamMethod:
    if name not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}; choose one of {', '.join(CAM_METHODS)}")
    return CAM_METHODS[name](classifier)


__all__ = ["CAM_METHODS", "DEFAULT_CAM", "CamMethod", "make_cam", "weighted_cam"]
