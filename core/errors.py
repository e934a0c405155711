"""The errors a user can cause (bad paths, bad files, bad names): reported as one line, exit code 2."""
from .backbones import BackboneInitError
from .checkpoint import CheckpointError
from .covidct import DataError
from .feature_cache import CacheError
from .imaging import ImageReadError
from .runfolder import RunError
from .verdicts import VerdictError, VerdictStoreError



class UsageError(ValueError):
    """A command-line value or combination a command cannot run with (a bad --tau, an --out in use)."""


USER_ERRORS = (UsageError, BackboneInitError, CacheError, CheckpointError, DataError, ImageReadError, RunError, VerdictError,
               VerdictStoreError, FileNotFoundError)
