"""Sphinx configuration of the slapos documentation."""

from __future__ import annotations

project = "slapos"
author = "the slapos developers"
extensions: list[str] = []
master_doc = "index"
exclude_patterns = ["_build", "spec"]
html_theme = "alabaster"
