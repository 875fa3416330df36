"""The seeded case with every kind of difference gives exactly the expected plan."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.plugins.reconcile import plan_only
from warp_sync_pipeline.core.fields import SEEDED_RULES, FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.reconcile.frames import (
    AGREEMENT,
    ATTR_RULES,
    BAN,
    CHANGE,
    DUPLICATE_BAN,
    KIND,
    LINK,
    ORPHAN_KINDS,
    rules_from_attr,
    rules_to_attr,
)
from warp_sync_pipeline.core.reconcile.options import ReconcileError
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD, REASON
from warp_sync_pipeline.devstack.demo_seed import ExpectedRow, SeededDemo


def test_the_seeded_differences_give_exactly_the_expected_plan(
    engine: sa.Engine, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    plan = plan_only(engine, hubspot_client).plan
    data = demo.data

    changes = {ExpectedRow(CHANGE, r[BAN], r[FIELD], r[ACTION], r[REASON])
               for r in plan[plan[KIND] == CHANGE].to_dict("records")}
    assert changes == data.expected_changes
    assert len(plan[plan[KIND] == CHANGE]) == len(data.expected_changes)

    agreements = {ExpectedRow(AGREEMENT, r[BAN], r[FIELD], r[ACTION], r[REASON])
                  for r in plan[plan[KIND] == AGREEMENT].to_dict("records")}
    assert agreements == data.expected_agreements
    assert set(plan[plan[KIND] == LINK][BAN]) == data.expected_links

    orphans = {ExpectedRow(r[KIND], r[BAN]) for r in plan[plan[KIND].isin(ORPHAN_KINDS)].to_dict("records")}
    assert orphans == data.expected_orphans
    duplicates = plan[plan[KIND] == DUPLICATE_BAN][BAN].value_counts().to_dict()
    assert duplicates == data.expected_duplicates


def test_a_frame_that_lost_its_rules_is_refused_not_decided_under_the_live_ones() -> None:
    # pandas drops attrs in some operations (merge): the run's rules must not quietly become today's.
    rules = FieldRules(SEEDED_RULES)
    frame = pd.DataFrame({"a": [1]})
    frame.attrs[ATTR_RULES] = rules_to_attr(rules)
    assert rules_from_attr(frame) == rules
    lost = frame.copy()
    lost.attrs = {}
    with pytest.raises(ReconcileError) as refused:
        rules_from_attr(lost)
    assert refused.value.code == "RULES_MISSING"
