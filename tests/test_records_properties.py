"""Properties of the record model: patch and overwrite (BRIEF section 1)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from satchel.protocol.records import RESERVED_FIELDS, format_timestamp, new_record, overwrite_record, patch_record

keys = st.text(min_size=1, max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
documents = st.dictionaries(keys, json_values, max_size=6)
NOW = format_timestamp(1_600_000_000_000)
LATER = format_timestamp(1_600_000_000_500)


def user_fields(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in RESERVED_FIELDS}


@given(documents)
def test_a_new_record_keeps_every_user_field(data: dict) -> None:
    record = new_record(data, "a" * 24, NOW)
    assert user_fields(record) == {k: v for k, v in data.items() if k not in RESERVED_FIELDS}
    assert (record["_id"], record["createdAt"], record["updatedAt"], record["__v"]) == ("a" * 24, NOW, NOW, 0)


@given(documents, documents)
def test_patch_adds_replaces_and_null_removes(data: dict, changes: dict) -> None:
    record = new_record(data, "a" * 24, NOW)
    patched = patch_record(record, changes, LATER)
    for key, value in user_fields(changes).items():
        if value is None:
            assert key not in patched
        else:
            assert patched[key] == value
    for key, value in user_fields(record).items():
        if key not in changes:
            assert patched[key] == value
    assert (patched["_id"], patched["createdAt"], patched["updatedAt"]) == (record["_id"], NOW, LATER)


@given(documents, documents)
def test_patch_is_idempotent(data: dict, changes: dict) -> None:
    once = patch_record(new_record(data, "a" * 24, NOW), changes, LATER)
    assert patch_record(once, changes, LATER) == once


@given(documents, documents, documents)
def test_overwrite_forgets_everything_but_identity(data: dict, first: dict, second: dict) -> None:
    record = new_record(data, "a" * 24, NOW)
    overwritten = overwrite_record(patch_record(record, first, NOW), second, LATER)
    assert user_fields(overwritten) == user_fields(new_record(second, "b" * 24, NOW))
    assert (overwritten["_id"], overwritten["createdAt"], overwritten["updatedAt"]) == (record["_id"], NOW, LATER)


@given(st.integers(min_value=0, max_value=253402300799999))
def test_timestamps_are_iso_utc_with_milliseconds(ms: int) -> None:
    text = format_timestamp(ms)
    assert len(text) == 24 and text.endswith("Z") and text[19] == "."
    assert int(text[20:23]) == ms % 1000
