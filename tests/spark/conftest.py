"""A local[2] SparkSession shared by every Spark test (it takes seconds to start)."""

from __future__ import annotations

import os
import sys

import pytest

try:
    from pyspark.sql import SparkSession
except ImportError:  # without the extra (pip install -e ".[test,spark]") these tests cannot run
    SparkSession = None
    collect_ignore_glob = ["test_*.py"]


def pytest_collection_modifyitems(items):
    # pyspark warns about pandas 3 and passes pandas a deprecated argument; neither
    # changes results (the parity tests check every value).
    for item in items:
        if "/spark/" in str(item.fspath):
            item.add_marker(pytest.mark.filterwarnings("ignore::FutureWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"))
            item.add_marker(pytest.mark.filterwarnings("ignore:Series.values returning"))


@pytest.fixture(scope="session")
def spark():
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("segmentkit-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
