"""Packaging for loglake.

The runtime requirements are ranges: the wheel runs on AWS Glue 5.0, which provides
boto3, pyarrow, pandas and numpy itself (deploy/glue-5.0-provided.txt), and each range
admits Glue's version so that installing the wheel there replaces none of them (a test
checks). Exact versions are in `constraints.txt`, which pins the whole dependency tree
the Makefile installs with; `make package` ships the rest at those versions for Glue.
"""
from setuptools import find_packages, setup

setup(
    name="loglake",
    version="0.1.0",
    description="Turn raw AWS CloudTrail and CloudWatch Logs into a read-ready ORC data lake",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    # ddl/ (Athena SQL) ships inside the package as loglake.ddl, so the CLI finds it anywhere.
    package_dir={"": "lib", "loglake.ddl": "ddl"},
    packages=find_packages("lib") + ["loglake.ddl", "loglake.ddl.views", "loglake.ddl.queries", "loglake.ddl.alerts"],
    package_data={"loglake": ["log4j2.properties"], "loglake.ddl": ["*.sql", "views/*.sql", "queries/*.sql", "alerts/*.sql"]},
    install_requires=[
        # Provided by Glue 5.0 (boto3/botocore 1.34.131, pyarrow 17.0.0, pandas 2.2.2,
        # numpy 1.26.4): lower bounds at those versions, so Glue's are used as they are.
        "boto3>=1.34.131,<2",
        "botocore>=1.34.131,<2",
        "pyarrow>=17.0.0,<27",
        # pandas 3 warns under PySpark 3.5.
        "pandas>=2.2.2,<3",
        "numpy>=1.26.4,<3",
        # Not provided by Glue 5.0: shipped with the job (dist/glue-wheels/).
        "great-expectations>=1.24.1,<2",
        "PyYAML>=6.0.3,<7",
        "orjson>=3.13.0,<4",
        # Athena (Trino) SQL is the one source of the views and queries; sqlglot runs it on Spark.
        "sqlglot>=30.30.0,<31",
    ],
    extras_require={
        # What AWS Glue provides itself, so the wheel shipped to Glue must not pull it in
        # (it would replace Glue's Spark): `pip install loglake[local]` to run anywhere else.
        "local": [
            # Spark 3.5.x is what AWS Glue 5.0 runs; do not move to 4.x.
            "pyspark==3.5.7",
            # awsglue's Python side, for getResolvedOptions; the JVM parts exist only on Glue.
            "awsglue-dev==2021.12.30",
            # Reads ORC footers with the ORC C++ library for `loglake contract` (not Spark,
            # which reads by name and forgives types that Athena rejects).
            "pyorc==0.12.0",
        ],
        "test": [
            "pytest==9.2.0",
            # `make test` runs the test files in two processes
            "pytest-xdist==3.8.0",
            "moto[server]==5.2.5",
            "ruff==0.17.6",
            "cfn-lint==1.58.0",
        ],
    },
    entry_points={"console_scripts": ["loglake=loglake.cli:main"]},
)
