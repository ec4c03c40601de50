"""Dataset manifests (JSON), installed as ``splitbench.data_manifests``.

This file makes the folder a regular package: setuptools' editable installs cannot map a
namespace package (one without ``__init__.py``) below a regular one, and
``importlib.resources.files`` needs the package to import.
"""
