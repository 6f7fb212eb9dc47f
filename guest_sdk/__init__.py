"""Tools for handler authors: package a function folder for deployment."""

from ._package import pack

__all__ = ["pack"]
