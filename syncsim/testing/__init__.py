"""Test helpers shipped with the package so users can test against real parts too."""
