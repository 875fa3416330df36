"""One map: the outbound, inbound and nightly assets read the two systems' external assets, each writing asset names
the system it writes, and every asset has owners and a code version."""

from typing import Any

import dagster as dg
import pytest

from warp_sync_pipeline.definitions import defs

WARP = dg.AssetKey(["warp", "customers"])
HUBSPOT = dg.AssetKey(["hubspot", "companies"])


@pytest.fixture(scope="module")
def graph() -> Any:
    return defs().resolve_asset_graph()


def _reads(graph: Any, key: str) -> set[dg.AssetKey]:
    return set(graph.get(dg.AssetKey(key)).parent_keys)


def test_the_three_flows_read_warps_customers_and_hubspots_companies(graph: Any) -> None:
    assert {WARP, HUBSPOT} <= _reads(graph, "hubspot_sync_queue")  # outbound
    assert {WARP, HUBSPOT} <= _reads(graph, "hubspot_webhook_events")  # inbound
    assert WARP in _reads(graph, "warp_customers")  # the nightly's two pulls, after its scope (which reads both)
    assert HUBSPOT in _reads(graph, "hubspot_companies")
    assert _reads(graph, "reconciliation_scope") == {WARP, HUBSPOT}
    for system in (WARP, HUBSPOT):
        node = graph.get(system)
        assert not node.is_materializable and node.group_name == "systems"
        assert "dagster/column_schema" in node.metadata


def test_writes_back_are_named_not_drawn(graph: Any) -> None:
    writes = {key.to_user_string(): graph.get(key).metadata.get("writes_to") for key in graph.get_all_asset_keys()}
    assert writes["hubspot_writeback"] == writes["hubspot_sync_queue"] == "hubspot/companies"
    assert writes["warp_writeback"] == writes["hubspot_webhook_events"] == "warp/customers"
    # No cycle: nothing the flows make is upstream of the systems.
    assert not graph.get(WARP).parent_keys and not graph.get(HUBSPOT).parent_keys


def test_every_asset_has_owners_and_a_code_version(graph: Any) -> None:
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:warp-sync"], key
        assert node.code_version, key
