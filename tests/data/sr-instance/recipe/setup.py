"""The recipe of tests/data/sr-instance: an HTTP service that publishes its URL."""

from setuptools import setup

setup(
    name="slaptest.recipe",
    version="1.0",
    packages=["slaptest_recipe"],
    entry_points={
        "zc.buildout": [
            "default = slaptest_recipe:Instance",
            "template = slaptest_recipe:Template",
        ]
    },
)
