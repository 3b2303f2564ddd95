"""casn-lite: an educational reproduction of CASN for person re-identification."""

__version__ = "0.1.0"
