"""The errors a user can cause (bad paths, bad files, bad names): reported as one line, exit code 2."""
from core.data.errors import DataError
from core.data.imaging import ImageReadError
from core.models.backbones import BackboneInitError
from core.runs.checkpoint import CheckpointError
from core.runs.feature_cache import CacheError
from core.runs.runfolder import RunError
from core.runs.verdicts import VerdictError, VerdictStoreError


class UsageError(ValueError):
    """A command-line value or combination a command cannot run with (a bad --tau, an --out in use)."""


USER_ERRORS = (UsageError, BackboneInitError, CacheError, CheckpointError, DataError, ImageReadError, RunError,
               VerdictError, VerdictStoreError, FileNotFoundError)
