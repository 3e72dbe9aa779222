"""Shared pytest fixtures. The data fixtures live in conftest_data.py (tiny images, LFW look-alike, HTTP server)."""

from conftest_data import face_folder, http_server, lfw_dir, make_image  # noqa: F401
