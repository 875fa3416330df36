"""The Dagster instance template (dagster.yaml), shipped with the package.

Copied into $DAGSTER_HOME by the local stack (`warp-sync`) and by a deployment. It does not live in the project's
root: Dagster's commands run without DAGSTER_HOME (`dg check defs`, `dg dev`) read a dagster.yaml from the current
folder, and this one needs the WARP_DAGSTER_PG_* variables only the stack sets.
"""

from pathlib import Path

TEMPLATE = Path(__file__).with_name("dagster.yaml")
