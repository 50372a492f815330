"""Hypothesis strategies for RendezvousMessages built from the protobuf descriptors, so
every variant and field of our .proto files is exercised with hostile values."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.addr_mangle import encode

T = FieldDescriptor

# A few realistic values mixed into the random ones, so deep paths are reached too.
IDS = st.sampled_from(["123456789", "987654321", "peer0001", "", "x" * 120, "bad\nid"])
ADDRS = st.sampled_from(
    [encode(("127.0.0.2", 5000), 1), encode(("::1", 7), 0), b"", b"\x00" * 17, b"\xff" * 18]
)
_INT_LIMITS = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_ENUM: (-3, 12),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == T.TYPE_STRING:
        if field.name in ("id", "old_id"):
            return IDS | st.text(max_size=24)
        return st.text(max_size=24)
    if field.type == T.TYPE_BYTES:
        if "socket_addr" in field.name or field.name == "local_addr":
            return ADDRS | st.binary(max_size=24)
        return st.binary(max_size=64)
    if field.type == T.TYPE_BOOL:
        return st.booleans()
    low, high = _INT_LIMITS.get(field.type, (-(2**31), 2**31 - 1))
    return st.integers(low, high)


def message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Keyword arguments for ``descriptor``'s class: each field absent or random."""
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == T.TYPE_MESSAGE:
            if depth >= 2:
                continue
            cls = GetMessageClass(field.message_type)
            inner = message(field.message_type, depth + 1).map(lambda kw, cls=cls: cls(**kw))
            value: st.SearchStrategy[Any] = inner
        else:
            value = _scalar(field)
        if field.is_repeated:
            value = st.lists(value, max_size=4)
        parts[field.name] = value
    return st.fixed_dictionaries({}, optional=parts)


def _variant(field: FieldDescriptor) -> st.SearchStrategy[bytes]:
    cls = GetMessageClass(field.message_type)

    def build(kwargs: dict[str, Any]) -> bytes:
        msg = pb.RendezvousMessage()
        getattr(msg, field.name).CopyFrom(cls(**kwargs))
        return msg.SerializeToString()

    return message(field.message_type).map(build)


RENDEZVOUS = st.one_of([_variant(f) for f in pb.RendezvousMessage.DESCRIPTOR.fields])
"""One serialized RendezvousMessage of any variant with random fields."""

PAYLOADS = RENDEZVOUS | st.binary(max_size=200)
"""What a hostile client may send: valid-looking messages and raw garbage."""
