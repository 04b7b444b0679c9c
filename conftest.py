"""Collection settings for the whole repository: the tests and the package's doctests."""

import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("pyspark") is None:
    # The Spark engine is an optional extra (pip install -e ".[spark]"): without pyspark
    # its modules cannot be imported, for doctests or tests. CI installs the extra.
    collect_ignore_glob += [
        "src/segmentkit/spark/*",
        "src/segmentkit/io/spark.py",
        "src/segmentkit/features/spark_engine.py",
        "tests/spark/*",
        "tests/features/test_spark_*.py",
    ]
