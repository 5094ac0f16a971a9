"""The shared words are str enums: each module's tuple is derived from them, and a member reads
and encodes exactly as the plain string the files and schemas hold."""

from __future__ import annotations

import json
import typing

from hotcb.mcp_server import tools_autopilot, tools_autopilot_mode

from hotcb import freeze, guard, judge, watched
from hotcb.ops import SOURCES
from hotcb.ops import Source as OpsSource
from hotcb.tune import recipe as tune_recipe
from hotcb.vocabulary import AutopilotMode, FreezeMode, Source, TuneMode


def test_a_member_is_its_string_in_comparisons_formatting_and_json():
    assert Source.HUMAN == "human" and f"{Source.HUMAN}" == "human" and str(Source.HUMAN) == "human"
    assert json.dumps({"source": Source.HUMAN, "mode": FreezeMode.PROD}) == '{"source": "human", "mode": "prod"}'
    assert f"{Source.HUMAN!r}" == "'human'" and f"{FreezeMode.PROD!r}" == "'prod'"  # quoted in messages
    assert OpsSource is Source  # still importable where it was first defined


def test_each_modules_tuple_is_derived_from_its_enum():
    assert freeze.MODES == ("off", "prod", "replay", "replay_adjusted") == FreezeMode.values()
    assert tune_recipe.MODES == ("off", "observe", "suggest", "active") == TuneMode.values()
    assert watched.AUTOPILOT_MODES == ("off", "suggest", "auto", "ai_suggest", "ai_auto") == AutopilotMode.values()
    assert watched.ACTING_MODES == ("auto", "ai_auto")
    assert judge.AUTOMATION_FREEZE_MODES == ("replay", "replay_adjusted")


def test_the_autopilot_tool_schema_offers_exactly_the_autopilot_modes():
    assert typing.get_args(tools_autopilot_mode.Mode) == AutopilotMode.values()


def test_source_groups_are_subsets_of_the_sources():
    assert set(judge.HUMAN_SOURCES) == {"human", "yaml"}
    assert set(guard.TRUSTED_SOURCES) == {"human", "yaml", "replay"}
    assert set(tools_autopilot.AUTOPILOT_PROCESS_SOURCES) == {"rule", "agent"}
    for group in (judge.HUMAN_SOURCES, guard.TRUSTED_SOURCES, tools_autopilot.AUTOPILOT_PROCESS_SOURCES):
        assert set(group) <= set(SOURCES)
    assert "kernel" not in SOURCES
