"""The leash: a small supervisor beside every scheduler the product starts (see :mod:`.supervisor`).

Nothing is imported here, so that a module which needs only the registration format
(:mod:`.records`) or the deadline file (:mod:`.deadline`) loads nothing else of the leash.
"""
