"""Hypothesis strategies for hostile protobuf messages, built from the message descriptors.

Every field gets values a hostile caller would send: huge and odd-unicode strings, ids with `#` and
`/`, negative and extreme numbers, unknown enum values, deep `Struct` nesting and odd timestamps.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from hypothesis import strategies as st

F = descriptor.FieldDescriptor

_ODD = ["a-fuzz", "", " ", "#", "/", "a#b", "a/b", "../..", "TENANT#x#LEDGER", "x" * 65, ".", "..", "\u202e\u0000",
        "\uff54\uff45\uff4e\uff41\uff4e\uff54", "😀" * 40, "a\nb", "%00", "${jndi:x}", "'; DROP TABLE",
        "lz1:t:x:" + "s" * 20]
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
STRINGS = st.one_of(
    st.sampled_from(_ODD),
    st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
    _TEXT,
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "#", "é", "😀"]), st.sampled_from([257, 1025, 70_000])),
)
_LIMITS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1), F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1), F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [v for v in (lo, hi, -1, 0, 1, 2, 99, 100, 1001, 10**9, 10**19) if lo <= v <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def nested_struct(depth: int) -> struct_pb2.Struct:
    """A Struct nested `depth` levels deep (alternating objects and lists)."""
    value: Any = "leaf"
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    struct = struct_pb2.Struct()
    struct.update({"deep": value})
    return struct


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), STRINGS),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(STRINGS, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def structs(draw: st.DrawFn) -> struct_pb2.Struct:
    if draw(st.booleans()):
        return nested_struct(draw(st.sampled_from([1, 10, 63, 65, 99, 150, 400])))
    struct = struct_pb2.Struct()
    struct.update(draw(st.dictionaries(STRINGS, _JSON, max_size=4)))
    return struct


timestamps = st.builds(
    lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n),
    integers(-(2**63), 2**63 - 1) | st.integers(0, 4_102_444_800),
    integers(-(2**31), 2**31 - 1) | st.just(0),
)


def messages(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `desc` with any subset of fields set to hostile values."""
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(desc)
    if desc.full_name == "google.protobuf.Struct":
        return structs()
    if desc.full_name == "google.protobuf.Timestamp":
        return timestamps

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for fld in desc.fields:
            if not draw(st.booleans()):
                continue
            values = _values(fld, depth)
            if values is None:
                continue
            if fld.label == F.LABEL_REPEATED:
                items = draw(st.lists(values, max_size=3 if depth < 2 else 1))
                target = getattr(message, fld.name)
                for item in items:
                    if fld.type == F.TYPE_MESSAGE:
                        target.add().CopyFrom(item)
                    else:
                        target.append(item)
            elif fld.type == F.TYPE_MESSAGE:
                getattr(message, fld.name).CopyFrom(draw(values))
            else:
                setattr(message, fld.name, draw(values))
        return message

    return build()


def _values(fld: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if fld.type == F.TYPE_MESSAGE:
        return None if depth > 3 else messages(fld.message_type, depth + 1)
    if fld.type == F.TYPE_STRING:
        return STRINGS
    if fld.type == F.TYPE_BYTES:
        return st.binary(max_size=64) | st.just(b"\x00" * 70_000)
    if fld.type == F.TYPE_BOOL:
        return st.booleans()
    if fld.type == F.TYPE_ENUM:
        return integers(-5, 2**31 - 1)
    if fld.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(width=32 if fld.type == F.TYPE_FLOAT else 64)
    lo, hi = _LIMITS[fld.type]
    return integers(lo, hi)
