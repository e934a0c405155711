"""The error every data reader raises for missing, misplaced or damaged data (a user error: one line, exit 2)."""


class DataError(ValueError):
    pass
