"""Only what pyproject.toml cannot say: the migrations live in the project's top-level `sql/` but ship inside the
package as `warp_sync_pipeline.sql`, so an installed wheel can upgrade a database (core/migrations.py reads them
there). Everything else about the build is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["warp_sync_pipeline*", "webhook_receiver*", "hubspot_sandbox*"]),
              "warp_sync_pipeline.sql"],
    package_dir={"warp_sync_pipeline.sql": "sql"},
)
