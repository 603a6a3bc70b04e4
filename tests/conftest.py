"""pytest configuration shared by tests/unit and tests/integration."""

from tests.support.collection import install

COLLECTIONS_PATH = install()
