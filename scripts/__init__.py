"""Repository tools run from the checkout (`python -m scripts.stack`); a package so tests import them too."""
