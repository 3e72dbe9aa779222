"""Tools for the course material itself, not imported by the chapters: the structure checks in
:mod:`facekit.course.lint` (``python -m facekit.course.lint notebooks/NN_name.py``)."""
