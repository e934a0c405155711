"""The errors a user can cause (bad paths, bad files, bad names): reported as one line, exit code 2."""
from .backbones import BackboneInitError
from .checkpoint import CheckpointError
from .covidct import DataError
from .imaging import ImageReadError
from .runfolder import RunError

USER_ERRORS = (BackboneInitError, CheckpointError, DataError, ImageReadError, RunError, FileNotFoundError)
