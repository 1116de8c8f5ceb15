"""The decisions and their collaborators (docs/design.md, section 7): the cycle (``cycle.py``) and
what it decides with. Importing the package loads none of them, so that a module that needs one
collaborator (``status.py`` needs ``term.Role``) does not load the whole decision core."""
