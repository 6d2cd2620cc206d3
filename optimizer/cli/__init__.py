"""``python -m optimizer``: the command-line entry points (:mod:`.main`) and their progress output."""
